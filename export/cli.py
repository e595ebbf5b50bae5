"""``bedside export CHECKPOINT``: ONNX model + manifest into a versioned model directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".bedside/models/onnx"),
    show_default=True,
    help="Model directory: writes <out>/<name>/<version>/{model.onnx,manifest.json}.",
)
@click.option(
    "--version",
    "version",
    default="1.0.0",
    show_default=True,
    help="Semantic version of this export (versions are immutable).",
)
@click.option("--name", default=None, help="Model name [the checkpoint's kind].")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Evaluation JSON for headline metrics and thresholds [models/reports/<kind>.json].",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".bedside/data"),
    show_default=True,
    help="Cohort cache: held-out windows for the parity check.",
)
def export(
    checkpoint: Path, out: Path, version: str, name: str | None, report: Path | None, cache: Path
) -> None:
    """Export a trained checkpoint to ONNX; refuse it if torch and ONNX Runtime disagree.

    Given a shipped version's manifest.json instead, issue that model again as --version with
    the serving policy its evaluation chose (--report: `bedside evaluate glucose --real
    --model-dir`)."""
    from .onnx_export import ExportError, reissue
    from .onnx_export import export as run_export

    if checkpoint.name == "manifest.json":
        if report is None:
            msg = "--report: the evaluation of this shipped version (evaluate --model-dir)"
            raise click.UsageError(msg)
        try:
            target = reissue(checkpoint, out, version=version, report_path=report)
        except (ExportError, ValueError) as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"issued {target} (the same model.onnx, a new manifest.json)")
        return

    if report is None:
        import torch

        kind = torch.load(checkpoint, map_location="cpu", weights_only=False)["kind"]
        report = Path("models/reports") / f"{kind}.json"
    try:
        target = run_export(
            checkpoint, out, version=version, cache=cache, report_path=report, name=name
        )
    except (ExportError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"exported {target}/model.onnx with its manifest.json")
