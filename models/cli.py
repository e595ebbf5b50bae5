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
@click.option(
    "--real",
    is_flag=True,
    help="glucose: train on the real CGM of the training patients (Shanghai T1DM/T2DM).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Real data folder [$BEDSIDE_DATA_DIR or ../shared/data].",
)
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
    real: bool,
    data: Path | None,
) -> None:
    """Train a risk model (glucose forecaster or deterioration)."""
    from .training import TrainConfig

    config = TrainConfig(epochs=epochs, seed=seed)
    started = time.monotonic()
    days = days or DEFAULT_DAYS[kind]
    hidden = hidden or DEFAULT_HIDDEN[kind]
    path = _checkpoint(out, kind)
    if real and kind != "glucose":
        msg = "--real trains the glucose model (deterioration: not yet)"
        raise click.UsageError(msg)
    if real:
        from .glucose import real as real_data
        from .glucose.real_train import train as train_real

        path = out / "glucose-real.pt"
        try:
            summary = train_real(
                path,
                data=data or real_data.data_dir(),
                hidden=hidden,
                config=TrainConfig(epochs=epochs, seed=seed, batch_size=512, patience=3),
                progress=not quiet,
            )
        except real_data.DataMissing as missing:
            raise click.ClickException(str(missing)) from missing
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
@click.option(
    "--real",
    is_flag=True,
    help="glucose: a checkpoint trained with --real, on the real test patients; sets the gate.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Real data folder [$BEDSIDE_DATA_DIR or ../shared/data].",
)
def evaluate(
    kind: str, checkpoint: Path | None, reports: Path, cache: Path, real: bool, data: Path | None
) -> None:
    """Evaluate a trained model against its baselines on held-out patients."""
    started = time.monotonic()
    default = Path(".bedside/models") / "glucose-real.pt" if real else None
    checkpoint = checkpoint or default or _checkpoint(Path(".bedside/models"), kind)
    if not checkpoint.exists():
        flag = " --real" if real else ""
        msg = f"no checkpoint at {checkpoint}: run `bedside train {kind}{flag}` first"
        raise click.ClickException(msg)
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
