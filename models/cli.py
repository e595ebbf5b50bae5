"""``bedside train`` and ``bedside evaluate`` (need the ``train`` extra: torch, simglucose)."""

from __future__ import annotations

import time
from pathlib import Path

import click

KINDS = click.Choice(["glucose", "deterioration"])
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
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--hidden", type=int, default=None, help="GRU width [32].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    kind: str,
    out: Path,
    cache: Path,
    days: int | None,
    patients: int,
    seed: int,
    epochs: int,
    hidden: int | None,
    quiet: bool,
) -> None:
    """Train a risk model (glucose forecaster or deterioration) from simulated data."""
    from .training import TrainConfig

    config = TrainConfig(epochs=epochs, seed=seed)
    started = time.monotonic()
    days = days or DEFAULT_DAYS[kind]
    hidden = hidden or DEFAULT_HIDDEN[kind]
    path = _checkpoint(out, kind)
    if kind == "glucose":
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
    "--cache", type=click.Path(path_type=Path), default=Path(".bedside/data"), show_default=True
)
def evaluate(kind: str, checkpoint: Path | None, reports: Path, cache: Path) -> None:
    """Evaluate a trained model against its baselines on held-out patients."""
    started = time.monotonic()
    checkpoint = checkpoint or _checkpoint(Path(".bedside/models"), kind)
    if not checkpoint.exists():
        msg = f"no checkpoint at {checkpoint}: run `bedside train {kind}` first"
        raise click.ClickException(msg)
    if kind == "glucose":
        from .glucose.evaluate import evaluate as evaluate_glucose

        evaluate_glucose(checkpoint, reports, cache)
    else:
        from .vitals.evaluate import evaluate as evaluate_vitals

        evaluate_vitals(checkpoint, reports, cache)
    click.echo(f"{kind}: report {reports / (kind + '.md')} ({time.monotonic() - started:.0f} s)")
