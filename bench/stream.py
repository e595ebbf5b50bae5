"""End-to-end figures of the stream on the embedded stack (``bedside stack up`` first).

    .venv/bin/python bench/stream.py [--events 150000] [--patients 1000] [--rate 2000]

1. Throughput: the same pre-produced native records (CGM and heart rate, 1,000 patients)
   consumed by (a) the naive per-event Faust agent (JSON -> faust.Record -> one table
   write), (a2) a ``take_events`` agent that only counts (Faust's own floor), (a3) Bedside's
   batch delivery to a handler that only counts (the floor of the stream's consumer path),
   (b) a Bedside worker (decode, windows, NEWS2/glucose rules, ONNX models, alerts, risk
   events, InfluxDB writes, one table write per patient per batch) and (b2) the same worker
   with the models off. Events/s from the
   worker's first processed record to the last; the ratio is measured in the same run.
2. Latency: records produced at a fixed rate (event time = produce time) whose glucose
   crosses the low threshold every 10th reading; p50/p99 of (alert received - event time).
3. State: mean bytes of a patient's window as stored in the table.
Prints a table and a JSON line. Every run uses fresh topic names and consumer groups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploy.benchkit import measure_latency, p50_p99, produce, records, run_worker
from streams.engine.broker import ensure_bedside_topics, ensure_topics
from streams.settings import get_settings

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--latency-seconds", type=int, default=30)
    args = parser.parse_args()
    settings = get_settings()
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bedside-bench-"))
    bedside = str(Path(sys.executable).parent / "bedside")
    # every worker's data in the run's own folder (a fresh clone has no .bedside/)
    base_env = {
        **os.environ,
        "BEDSIDE_WORKER__LOG_LEVEL": "warning",
        "BEDSIDE_WORKER__DATA_DIR": str(work / "data"),
    }
    per_patient = max(2, args.events // args.patients)
    items = records(args.patients, per_patient, datetime.now(UTC) - timedelta(hours=1))
    n = len(items)

    # (a) naive agent
    naive_topic = f"bench.{run}.naive"
    asyncio.run(ensure_topics(settings.kafka, [naive_topic], settings.topics.partitions))
    asyncio.run(produce(settings, {"glucose": naive_topic, "vitals": naive_topic}, items))

    def reference(mode: str, port: int) -> float:
        """A reference agent of naive_worker.py (BENCH_MODE) on the naive topic's records."""
        env = {
            **base_env,
            "BENCH_TOPIC": naive_topic,
            "BENCH_MODE": mode,
            "BENCH_PARTITIONS": str(settings.topics.partitions),
            "BEDSIDE_WORKER__APP_ID": f"bench-{mode}-{run}",
            "BEDSIDE_WEB__PORT": str(port),
        }
        argv = [sys.executable, str(HERE / "naive_worker.py"), "worker"]
        return run_worker(argv, env, port, n, work / f"{mode}.log")

    naive = reference("naive", 6081)
    # (a2) Faust's own floor: a take_events agent that only counts, same records
    floor = reference("floor", 6084)
    # (a3) the floor of Bedside's consumer path: batch delivery to a handler that only counts
    batch_floor = reference("batch", 6085)

    def stream_run(name: str, **extra: str) -> tuple[float, dict[str, str]]:
        """A Bedside worker on fresh topics holding the same records; (events/s, its env)."""
        prefix = f"bench.{run}.{name}."
        topics = get_settings(topics={"prefix": prefix}).topics
        asyncio.run(ensure_bedside_topics(settings.kafka, topics))
        asyncio.run(produce(settings, {"glucose": topics.glucose, "vitals": topics.vitals}, items))
        env = {
            **base_env,
            "BEDSIDE_TOPICS__PREFIX": prefix,
            "BEDSIDE_WORKER__APP_ID": f"bench-{name}-{run}",
            "BEDSIDE_WEB__PORT": "6082",
            **extra,
        }
        return run_worker([bedside, "worker"], env, 6082, n, work / f"{name}.log"), env

    # (b) Bedside's stream (models on: the default); (b2) the same without the ONNX models
    bedside_rate, stream_env = stream_run("stream")
    rules_rate, _ = stream_run("rules", BEDSIDE_SCORING__MODELS="[]")

    # (c) latency at a fixed rate on fresh topics, worker running
    lat_prefix = f"bench.{run}.lat."
    lat_settings = get_settings(topics={"prefix": lat_prefix})
    asyncio.run(ensure_bedside_topics(settings.kafka, lat_settings.topics))
    lat_env = {
        **stream_env,
        "BEDSIDE_TOPICS__PREFIX": lat_prefix,
        "BEDSIDE_WORKER__APP_ID": f"bench-lat-{run}",
    }
    lat = measure_latency(
        [bedside, "worker"],
        lat_env,
        6082,
        work / "latency.log",
        settings,
        lat_settings,
        args.patients,
        args.rate,
        args.latency_seconds,
    )
    p50, p99 = p50_p99(lat)

    # (d) state bytes per patient (windows as the table stores them)
    from streams.pipeline import PatientPipeline
    from streams.schemas.observation import Format, Kind, Observation

    pipeline = PatientPipeline(settings.stream)
    sizes = []
    day = datetime.now(UTC) - timedelta(hours=24)
    for p in range(20):
        obs = []
        for minute in range(0, 24 * 60, 5):
            at = day + timedelta(minutes=minute)
            for code, kind, value in (
                ("99504-3", Kind.GLUCOSE, 110.0),
                ("8867-4", Kind.VITAL, 72.0),
                ("59408-5", Kind.VITAL, 97.0),
                ("9279-1", Kind.VITAL, 16.0),
            ):
                obs.append(
                    Observation(
                        patient_id=f"s{p}",
                        kind=kind,
                        code=code,
                        value=value + p,
                        unit="x",
                        effective_at=at,
                        received_at=at,
                        source="b",
                        event_id=f"{p}{code}{minute}",
                        format=Format.NATIVE,
                    )
                )
        sizes.append(len(pipeline.process(f"s{p}", None, obs).window.to_bytes()))

    rows = [
        ("naive Faust agent, events/s", f"{naive:,.0f}"),
        ("Faust floor (take_events agent that only counts), events/s", f"{floor:,.0f}"),
        (
            "Bedside consumer floor (batch delivery that only counts), events/s",
            f"{batch_floor:,.0f}",
        ),
        ("Bedside stream (models on: the default), events/s", f"{bedside_rate:,.0f}"),
        ("ratio Bedside / naive", f"{bedside_rate / naive:.1f}x"),
        ("Bedside stream, rules only (no ONNX models), events/s", f"{rules_rate:,.0f}"),
        ("ratio rules-only Bedside / naive", f"{rules_rate / naive:.1f}x"),
        (f"produce->alert latency p50 at {args.rate:,.0f}/s (ms)", _shown(p50)),
        (f"produce->alert latency p99 at {args.rate:,.0f}/s (ms)", _shown(p99)),
        ("alerts measured", str(len(lat))),
        ("window bytes/patient (24 h CGM+HR+SpO2+RR, 5 min)", f"{statistics.mean(sizes):,.0f}"),
    ]
    for name, value in rows:
        print(f"{name:<70} {value:>10}")  # noqa: T201
    print(
        json.dumps(
            {
                "bench": "stream",
                "events": n,
                "patients": args.patients,  # noqa: T201
                "naive_events_per_s": round(naive),
                "faust_floor_events_per_s": round(floor),
                "batch_floor_events_per_s": round(batch_floor),
                "bedside_events_per_s": round(bedside_rate),
                "bedside_rules_only_events_per_s": round(rules_rate),
                "latency_p50_ms": _rounded(p50),
                "latency_p99_ms": _rounded(p99),
                "alerts": len(lat),
                "window_bytes": round(statistics.mean(sizes)),
            }
        )
    )


def _shown(value: float) -> str:
    """A figure, or why there is none (no alert arrived in the latency phase)."""
    return "not measured: no alert arrived" if math.isnan(value) else f"{value:,.0f}"


def _rounded(value: float) -> int | None:
    return None if math.isnan(value) else round(value)


if __name__ == "__main__":
    main()
