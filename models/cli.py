"""``bedside train`` and ``bedside evaluate`` (need the ``train`` extra: torch, simglucose)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

KINDS = click.Choice(["glucose", "deterioration"])
DATA_OPTION = click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Real data folder [$BEDSIDE_DATA_DIR or ../shared/data].",
)
DEFAULT_DAYS = {"glucose": 28, "deterioration": 3}
DEFAULT_HIDDEN = {"glucose": 32, "deterioration": 32}


def _checkpoint(directory: Path, kind: str) -> Path:
    return directory / f"{kind}.pt"


@click.command()
@click.argument("kind", type=KINDS)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path(".bedside/models"),
    show_default=True,
    help="Directory for the checkpoint (<kind>.pt).",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path(".bedside/data"),
    show_default=True,
    help="Directory for the simulated cohort (reused if there).",
)
@click.option(
    "--days",
    type=int,
    default=None,
    help="Days simulated per patient [glucose: 14, deterioration: 3].",
)
@click.option(
    "--patients",
    type=int,
    default=3000,
    show_default=True,
    help="Deterioration cohort size (glucose always uses the 30 virtual patients).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed of training.")
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Epochs [30; --real: glucose 12, deterioration 40, as the shipped models].",
)
@click.option("--hidden", type=int, default=None, help="GRU width [32].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--real",
    is_flag=True,
    help="Train on real patients: glucose on Shanghai CGM, deterioration on ICU stays.",
)
@click.option(
    "--treatments",
    is_flag=True,
    help="glucose --real: the ablation with insulin and meal records (validation only; "
    "models/reports/glucose_treatments.md; seeds 7 and 1 unless --seed); nothing is exported.",
)
@click.option(
    "--label",
    type=click.Choice(["death-within-24h", "death-after-24h"]),
    default="death-within-24h",
    show_default=True,
    help="deterioration --real: death within 24 h asked every hour (the live alarm's "
    "question), or death after the first day asked at hour 24 (v2).",
)
@DATA_OPTION
def train(
    kind: str,
    out: Path,
    cache: Path,
    days: int | None,
    patients: int,
    seed: int,
    epochs: int | None,
    hidden: int | None,
    quiet: bool,
    real: bool,
    treatments: bool,
    label: str,
    data: Path | None,
) -> None:
    """Train a risk model (glucose forecaster or deterioration)."""
    hidden_real = hidden
    from .training import TrainConfig

    config = TrainConfig(epochs=epochs or 30, seed=seed)
    started = time.monotonic()
    days = days or DEFAULT_DAYS[kind]
    hidden = hidden or DEFAULT_HIDDEN[kind]
    path = _checkpoint(out, kind)
    if treatments:
        if not (real and kind == "glucose"):
            msg = "--treatments goes with `train glucose --real`"
            raise click.UsageError(msg)
        _treatments_ablation(data, hidden_real or hidden, epochs, seed, started)
        return
    if real:
        path, summary = _train_real(
            kind, out, data, hidden_real, hidden, epochs, seed, quiet, label
        )
    elif kind == "glucose":
        from .glucose.train import train as train_glucose

        summary = train_glucose(
            path,
            days=days,
            seed=seed,
            cache=cache,
            hidden=hidden,
            config=config,
            progress=not quiet,
        )
    else:
        from .vitals.train import train as train_vitals

        summary = train_vitals(
            path,
            patients=patients,
            days=days,
            seed=seed,
            cache=cache,
            hidden=hidden,
            config=config,
            progress=not quiet,
        )
    click.echo(
        f"{kind}: {summary['parameters']} parameters, {summary['epochs_run']} epochs, best "
        f"validation loss {summary['best_val_loss']:.4f}; checkpoint {path} "
        f"({time.monotonic() - started:.0f} s)"
    )


def _treatments_ablation(
    data: Path | None, hidden: int, epochs: int | None, seed: int, started: float
) -> None:
    from .glucose import real as real_data
    from .glucose import treatments
    from .training import TrainConfig

    config = TrainConfig(epochs=epochs or 12, seed=seed, batch_size=512, patience=3)
    try:
        seeds = treatments.SEEDS if seed == treatments.SEEDS[0] else (seed,)
        result = treatments.ablation(data or real_data.data_dir(), config, hidden, seeds)
    except real_data.DataMissing as missing:
        raise click.ClickException(str(missing)) from missing
    written = treatments.write(result, Path("models/reports"))
    took = time.monotonic() - started
    click.echo(f"glucose treatments ablation: report {written} ({took:.0f} s)")


def _train_real(
    kind: str,
    out: Path,
    data: Path | None,
    hidden_real: int | None,
    hidden: int,
    epochs: int | None,
    seed: int,
    quiet: bool,
    label: str = "death-within-24h",
) -> tuple[Path, dict[str, Any]]:
    """``train --real``: deterioration on ICU stays, glucose on Shanghai CGM."""
    from .training import TrainConfig

    if kind == "deterioration":
        from .glucose.real import DataMissing, data_dir
        from .vitals.real import DEFAULT_TASK, TASKS
        from .vitals.real import train as train_real_icu

        suffix = "" if label == DEFAULT_TASK else f"-{label}"
        path = out / f"deterioration-real{suffix}.pt"
        try:
            summary = train_real_icu(
                path,
                data=data or data_dir(),
                hidden=hidden_real or 16,
                config=TrainConfig(
                    epochs=epochs or 40,
                    batch_size=64 if label == "death-after-24h" else 256,  # stays or hours
                    learning_rate=3e-3,
                ),
                task=TASKS[label],
            )
        except DataMissing as missing:
            raise click.ClickException(str(missing)) from missing
        return path, summary
    from .glucose import real as real_data
    from .glucose.real_train import train as train_real

    path = out / "glucose-real.pt"
    try:
        summary = train_real(
            path,
            data=data or real_data.data_dir(),
            hidden=hidden,
            config=TrainConfig(epochs=epochs or 12, seed=seed, batch_size=512, patience=3),
            progress=not quiet,
        )
    except real_data.DataMissing as missing:
        raise click.ClickException(str(missing)) from missing
    return path, summary


@click.command()
@click.argument("kind", type=KINDS)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint to evaluate [.bedside/models/<kind>.pt].",
)
@click.option(
    "--reports",
    type=click.Path(path_type=Path),
    default=Path("models/reports"),
    show_default=True,
    help="Where the markdown report, JSON and plots go.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path(".bedside/data"),
    show_default=True,
    help="Directory of the simulated cohort (reused if there).",
)
@click.option(
    "--real",
    is_flag=True,
    help="A checkpoint trained with --real, on the real test patients (glucose: sets the gate).",
)
@DATA_OPTION
@click.option(
    "--cgm",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="glucose: a CGM export of your own patients, scored by the installed model (gated).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tidy", "nightscout", "clarity", "libreview"]),
    default="tidy",
    show_default=True,
    help="--cgm file format: tidy CSV (id,time,gl), Nightscout entries JSON, Dexcom Clarity "
    "CSV, LibreView CSV.",
)
@click.option(
    "--tz", default="UTC", show_default=True, help="--cgm: zone of times written without one."
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--cgm: also write the figures as JSON (keys in docs/models.md).",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="--cgm: model directory [the models shipped in the package].",
)
def evaluate(
    kind: str,
    checkpoint: Path | None,
    reports: Path,
    cache: Path,
    real: bool,
    data: Path | None,
    cgm: Path | None,
    fmt: str,
    tz: str,
    json_out: Path | None,
    model_dir: Path | None,
) -> None:
    """Evaluate a model against its baselines: held-out patients, or your own CGM file."""
    started = time.monotonic()
    if cgm is not None:
        _evaluate_file(kind, cgm, fmt, tz, json_out, model_dir)
        return
    if real and kind == "glucose" and model_dir is not None:
        from .glucose import real as real_data
        from .glucose.real_report import evaluate_shipped

        written = evaluate_shipped(model_dir, reports, data or real_data.data_dir())
        click.echo(f"glucose (shipped): report {written} ({time.monotonic() - started:.0f} s)")
        return
    default = Path(".bedside/models") / f"{kind}-real.pt" if real else None
    checkpoint = checkpoint or default or _checkpoint(Path(".bedside/models"), kind)
    if not checkpoint.exists():
        flag = " --real" if real else ""
        msg = f"no checkpoint at {checkpoint}: run `bedside train {kind}{flag}` first"
        raise click.ClickException(msg)
    if real and kind == "deterioration":
        from .glucose.real import DataMissing, data_dir
        from .vitals.real import evaluate as evaluate_icu

        try:
            written = evaluate_icu(checkpoint, reports, data or data_dir())
        except DataMissing as missing:
            raise click.ClickException(str(missing)) from missing
        click.echo(
            f"deterioration (real ICU): report {written} ({time.monotonic() - started:.0f} s)"
        )
        return
    if real:
        from .glucose import real as real_data
        from .glucose.real_report import evaluate_checkpoint

        try:
            written = evaluate_checkpoint(checkpoint, reports, data or real_data.data_dir())
        except real_data.DataMissing as missing:
            raise click.ClickException(str(missing)) from missing
        click.echo(f"glucose (real CGM): report {written} ({time.monotonic() - started:.0f} s)")
        return
    if kind == "glucose":
        from .glucose.evaluate import evaluate as evaluate_glucose

        evaluate_glucose(checkpoint, reports, cache)
    else:
        from .vitals.evaluate import evaluate as evaluate_vitals

        evaluate_vitals(checkpoint, reports, cache)
    click.echo(f"{kind}: report {reports / (kind + '.md')} ({time.monotonic() - started:.0f} s)")


def _evaluate_file(
    kind: str, cgm: Path, fmt: str, tz: str, json_out: Path | None, model_dir: Path | None
) -> None:
    import json
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from .glucose.clinic import CgmFileError, evaluate_file, text_report

    if kind != "glucose":
        msg = "--cgm evaluates the glucose model"
        raise click.UsageError(msg)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        msg = f"--tz {tz!r} is not an IANA time zone (for example Europe/London)"
        raise click.UsageError(msg) from error
    try:
        result = evaluate_file(cgm, fmt, tz, model_dir)
    except CgmFileError as error:
        raise click.ClickException(str(error)) from error
    click.echo(text_report(result))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"figures written to {json_out}")
