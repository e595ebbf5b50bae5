"""End-to-end figures of the stream on the embedded stack (``bedside stack up`` first), in
the two regimes a deployment meets, side by side in one run.

    .venv/bin/python bench/stream.py [--regimes dense,sparse] [--rate 2000]
        [--dense 1000x150000] [--sparse 100000x200000] [--latency-seconds 30] [--no-floors]

- **dense**: few patients, many events each (1,000 patients x 150 events): a batch carries
  many events per patient and per-patient costs are shared;
- **sparse**: where hospitals live (100,000 patients x 2 events): about one event per patient
  per batch, each patient's state loaded, scored and stored for one reading.

Per regime, on the same pre-produced native records (CGM and heart rate): (a) the naive
per-event Faust agent (JSON -> faust.Record -> one table write), (b) a Bedside worker (decode,
windows, NEWS2/glucose rules, ONNX models, alerts, risk events, InfluxDB writes, one table
write per patient per batch) with its resident memory at the end and the bytes of state it
stored (the changelog) per event, (b2) the same worker with the models off; (c) latency:
records produced at ``--rate`` events/s over the regime's patients, with probe patients
whose glucose falls to an urgent low each second: p50/p99 of (alarm received - produced).
Dense also measures the floors: (a2) a ``take_events`` agent that only counts (Faust's own)
and (a3) Bedside's batch delivery to a handler that only counts. Events/s from the first
record a worker is done with to the last: for Bedside, *stored* (its alarms, risk events,
series points and window all acknowledged: a worker that computes faster than it stores is
not counted faster); for the reference agents, processed. Ratios are of the same run. Then
the stored bytes of a realistic day of one patient's 5-minute CGM, heart rate, SpO2 and
respiratory rate.
Prints a table and a JSON line; a figure that cannot be measured says why. Every run uses
fresh topic names and consumer groups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deploy.benchkit import (
    BOTH_MODELS,
    WorkerRun,
    measure_latency,
    measure_workers,
    monitored_day,
    p50_p99,
    produce,
    records,
    run_worker,
)
from streams.engine.broker import ensure_bedside_topics, ensure_topics
from streams.processing import codec
from streams.settings import get_settings

HERE = Path(__file__).parent
MODELS_OFF = {"BEDSIDE_SCORING__MODELS": "[]"}


@dataclass
class Regime:
    name: str
    patients: int
    events: int
    figures: dict[str, Any] = field(default_factory=dict)


def parse_regime(name: str, text: str) -> Regime:
    patients, events = (int(part.replace(",", "")) for part in text.lower().split("x"))
    return Regime(name, patients, events)


class Bench:
    """One run: its id, work folder, settings and worker environment."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.run = uuid.uuid4().hex[:6]
        self.work = Path(tempfile.mkdtemp(prefix="bedside-bench-"))
        self.bedside = str(Path(sys.executable).parent / "bedside")
        # every worker's data in the run's own folder (a fresh clone has no .bedside/)
        self.env = {
            **BOTH_MODELS,
            **os.environ,
            "BEDSIDE_WORKER__LOG_LEVEL": "warning",
            "BEDSIDE_WORKER__DATA_DIR": str(self.work / "data"),
        }

    def reference(self, mode: str, regime: Regime, items: list[Any], port: int) -> float:
        """A reference agent of naive_worker.py (BENCH_MODE) on the regime's records."""
        topic = f"bench.{self.run}.{regime.name}.{mode}"
        partitions = self.settings.topics.partitions
        asyncio.run(ensure_topics(self.settings.kafka, [topic], partitions))
        asyncio.run(produce(self.settings, {"glucose": topic, "vitals": topic}, items))
        env = {
            **self.env,
            "BENCH_TOPIC": topic,
            "BENCH_MODE": mode,
            "BENCH_PARTITIONS": str(partitions),
            "BEDSIDE_WORKER__APP_ID": f"bench-{regime.name}-{mode}-{self.run}",
            "BEDSIDE_WEB__PORT": str(port),
        }
        argv = [sys.executable, str(HERE / "naive_worker.py"), "worker"]
        log = self.work / f"{regime.name}-{mode}.log"
        return run_worker(argv, env, port, len(items), log)

    def stream(self, regime: Regime, label: str, items: list[Any], **extra: str) -> WorkerRun:
        """A Bedside worker on fresh topics holding the regime's records."""
        prefix = f"bench.{self.run}.{regime.name}.{label}."
        topics = get_settings(topics={"prefix": prefix}).topics
        asyncio.run(ensure_bedside_topics(self.settings.kafka, topics))
        topic_of = {"glucose": topics.glucose, "vitals": topics.vitals}
        asyncio.run(produce(self.settings, topic_of, items))
        env = {
            **self.env,
            "BEDSIDE_TOPICS__PREFIX": prefix,
            "BEDSIDE_WORKER__APP_ID": f"bench-{regime.name}-{label}-{self.run}",
            "BEDSIDE_WEB__PORT": "6082",
            **extra,
        }
        log = self.work / f"{regime.name}-{label}.log"
        return measure_workers([self.bedside, "worker"], [(env, 6082, log)], len(items))

    def latency(self, regime: Regime, rate: float, seconds: int) -> list[float]:
        prefix = f"bench.{self.run}.{regime.name}.lat."
        lat_settings = get_settings(topics={"prefix": prefix})
        asyncio.run(ensure_bedside_topics(self.settings.kafka, lat_settings.topics))
        env = {
            **self.env,
            "BEDSIDE_TOPICS__PREFIX": prefix,
            "BEDSIDE_WORKER__APP_ID": f"bench-{regime.name}-lat-{self.run}",
            "BEDSIDE_WEB__PORT": "6082",
        }
        log = self.work / f"{regime.name}-latency.log"
        argv = [self.bedside, "worker"]
        return measure_latency(
            argv, env, 6082, log, self.settings, lat_settings, regime.patients, rate, seconds
        )


def measure(bench: Bench, regime: Regime, args: argparse.Namespace) -> None:
    per_patient = max(2, regime.events // regime.patients)
    start = datetime.now(UTC) - timedelta(hours=1)
    items = records(regime.patients, per_patient, start)
    f = regime.figures
    f["events"] = len(items)
    f["naive"] = bench.reference("naive", regime, items, 6081)
    if args.floors and regime.name == "dense":
        f["faust_floor"] = bench.reference("floor", regime, items, 6084)
        f["batch_floor"] = bench.reference("batch", regime, items, 6085)
    models = bench.stream(regime, "stream", items)
    f["bedside"] = models.events_per_s
    f["rss_mb"] = models.rss_bytes / 2**20
    written = models.stats.get("state_bytes", 0)
    f["state_bytes_per_event"] = written / max(1, models.stats.get("observations", 0))
    f["state_bytes_per_write"] = written / max(1, models.stats.get("state_writes", 0))
    f["rules"] = bench.stream(regime, "rules", items, **MODELS_OFF).events_per_s
    latencies = bench.latency(regime, args.rate, args.latency_seconds)
    f["alarms"] = len(latencies)
    f["p50"], f["p99"] = p50_p99(latencies)


def day_window_bytes(days: int = 20) -> float:
    """Mean stored bytes of a realistic day of one patient (``benchkit.monitored_day``)."""
    end = int(datetime.now(UTC).timestamp()) * 1000
    sizes = [len(codec.encode(monitored_day(seed, end))) for seed in range(days)]
    return sum(sizes) / len(sizes)


def shown(value: float | None, fmt: str = "{:,.0f}") -> str:
    """A figure, or why there is none."""
    if value is None:
        return "not measured"
    if isinstance(value, float) and math.isnan(value):
        return "no alarm arrived"
    return fmt.format(value)


def table(regimes: list[Regime], rate: float, window_bytes: float) -> list[tuple[str, ...]]:
    def row(label: str, key: str, fmt: str = "{:,.0f}") -> tuple[str, ...]:
        return (label, *(shown(r.figures.get(key), fmt) for r in regimes))

    def ratio(label: str, key: str) -> tuple[str, ...]:
        return (label, *(f"{r.figures[key] / r.figures['naive']:.1f}x" for r in regimes))

    return [
        ("", *(f"{r.name}: {r.patients:,} patients" for r in regimes)),
        row("events", "events"),
        row("naive Faust agent, events/s", "naive"),
        row("Faust floor (take_events agent that only counts), events/s", "faust_floor"),
        row("Bedside consumer floor (batch delivery that only counts), events/s", "batch_floor"),
        row("Bedside stream (models on: the default), events/s", "bedside"),
        ratio("ratio Bedside / naive", "bedside"),
        row("Bedside stream, rules only (no ONNX models), events/s", "rules"),
        ratio("ratio rules-only Bedside / naive", "rules"),
        row("worker RSS at the end (models on), MiB", "rss_mb"),
        row("state bytes written (changelog) per event", "state_bytes_per_event", "{:,.1f}"),
        row("state bytes per stored window", "state_bytes_per_write"),
        row(f"produce->alarm latency p50 at {rate:,.0f} events/s (ms)", "p50"),
        row(f"produce->alarm latency p99 at {rate:,.0f} events/s (ms)", "p99"),
        row("alarms measured", "alarms"),
        ("stored bytes of a day (5-min CGM+HR+SpO2+RR)", f"{window_bytes:,.0f}", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default="dense,sparse", help="which regimes, in order")
    parser.add_argument("--dense", default="1000x150000", help="PATIENTSxEVENTS")
    parser.add_argument("--sparse", default="100000x200000", help="PATIENTSxEVENTS")
    parser.add_argument("--rate", type=float, default=2000, help="latency phase events/s")
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--no-floors", dest="floors", action="store_false")
    args = parser.parse_args()
    bench = Bench()
    specs = {"dense": args.dense, "sparse": args.sparse}
    regimes = [parse_regime(name, specs[name]) for name in args.regimes.split(",")]
    for regime in regimes:
        measure(bench, regime, args)
    window_bytes = day_window_bytes()
    for row in table(regimes, args.rate, window_bytes):
        print(f"{row[0]:<70}" + "".join(f"{cell:>26}" for cell in row[1:]))
    result = {
        "bench": "stream",
        "regimes": {
            r.name: {
                "patients": r.patients,
                **{
                    k: (None if isinstance(v, float) and math.isnan(v) else round(v, 1))
                    for k, v in r.figures.items()
                },
            }
            for r in regimes
        },
        "day_window_bytes": round(window_bytes),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
