"""The stream's batch step in process: no broker, no database, the ports in memory.

    .venv/bin/python bench/batch_step.py [--regimes dense,sparse] [--provider cpu|cuda]
        [--dense 1000x150000] [--sparse 100000x200000] [--batch 10000] [--max-batch 256]
        [--models-off]

What ``bench/stream.py`` measures end to end, without the consumer, the producer, the
changelog or the time-series server: decode, windows, rules, model inputs, ONNX scoring,
alarms, risk events, line protocol and window serialisation, per batch of ``--batch``
records (CGM and heart rate, native JSON) with a clock tick into every partition every
third batch. The ports are the in-memory fakes the unit tests use (``tests/support``).
Runs where no stack can (a GPU machine): ``--provider cuda`` scores on the GPU.
Prints events/s, microseconds per event and the mean stored window, and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "support"))

from fakes import TOPICS, Record, StepHarness, partition_of  # noqa: E402

from streams.engine.app import tune_gc  # noqa: E402
from streams.processing.pipeline import PatientPipeline  # noqa: E402
from streams.scoring.service import ModelScoring  # noqa: E402
from streams.settings import ScoringSettings, get_settings  # noqa: E402


def batches(patients: int, events: int, size: int) -> list[list[Record]]:
    """CGM and heart rate for each patient each step, one minute apart, in batches."""
    start = datetime.now(UTC) - timedelta(hours=6)
    records: list[Record] = []
    keys = [f"bench-{p:06d}".encode() for p in range(patients)]
    partitions = [partition_of(key) for key in keys]
    for step in range(max(1, events // (2 * patients))):
        at = (start + timedelta(minutes=step)).isoformat()
        for p, key in enumerate(keys):
            glucose = 60.0 if (step + p) % 10 in (0, 1) else 110.0 + p % 7  # lows open alarms
            for topic, code, unit, value in (
                (TOPICS.glucose, "99504-3", "mg/dL", glucose),
                (TOPICS.vitals, "8867-4", "/min", 70.0 + p % 20),
            ):
                body = {"patient_id": key.decode(), "code": code, "value": value, "unit": unit,
                        "effective_at": at, "source": "bench"}  # fmt: skip
                records.append(Record(topic, partitions[p], len(records), key, orjson.dumps(body)))
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    for n, chunk in enumerate(chunks):
        if n % 3 == 2:
            chunk.extend(
                Record(TOPICS.ticks, p, 0, None, b'{"tick_ms": 0}')
                for p in range(TOPICS.partitions)
            )
    return chunks


async def measure(patients: int, events: int, size: int, scoring: ModelScoring | None) -> dict:
    settings = get_settings()
    models = scoring.serving_models() if scoring else ()
    harness = StepHarness(PatientPipeline(settings.stream, models=models))
    if scoring is not None:
        harness.step.scoring = scoring
    harness.step.clock = lambda: datetime.now(UTC)
    work = batches(patients, events, size)
    count = sum(r.topic != TOPICS.ticks for chunk in work for r in chunk)
    started = time.perf_counter()
    for chunk in work:
        await harness.step(chunk)
    await harness.checkpoint.drain()
    elapsed = time.perf_counter() - started
    stored = [len(v) for partition in harness.state.data.values() for v in partition.values()]
    return {
        "patients": patients,
        "events": count,
        "events_per_s": count / elapsed,
        "us_per_event": elapsed / count * 1e6,
        "alerts": harness.stats.alerts,
        "mean_window_bytes": sum(stored) / max(1, len(stored)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default="dense,sparse")
    parser.add_argument("--dense", default="1000x150000", help="PATIENTSxEVENTS")
    parser.add_argument("--sparse", default="100000x200000", help="PATIENTSxEVENTS")
    parser.add_argument("--batch", type=int, default=10_000, help="records per batch")
    parser.add_argument("--provider", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-batch", type=int, default=256, help="windows per model call")
    parser.add_argument("--models-off", action="store_true")
    args = parser.parse_args()
    scoring = None
    if not args.models_off:
        scoring = ModelScoring(ScoringSettings(provider=args.provider, max_batch=args.max_batch))
    providers = (
        sorted({m["provider"] for m in scoring.store.describe().values()}) if scoring else []
    )
    tune_gc()  # as a worker runs
    result: dict[str, Any] = {"bench": "batch_step", "providers": providers, "regimes": {}}
    for name in args.regimes.split(","):
        patients, events = (int(x) for x in getattr(args, name).lower().split("x"))
        figures = asyncio.run(measure(patients, events, args.batch, scoring))
        result["regimes"][name] = figures
        print(  # noqa: T201
            f"{name:<7} {patients:>7,} patients {figures['events']:>8,} events  "
            f"{figures['events_per_s']:>9,.0f} events/s  {figures['us_per_event']:>7.1f} us/event"
            f"  window {figures['mean_window_bytes']:>6,.0f} B  models: {providers or 'off'}"
        )
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
