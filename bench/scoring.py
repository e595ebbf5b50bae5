"""Scoring figures: the shipped ONNX models per call, and batched vs one-at-a-time in the stream.

    .venv/bin/python bench/scoring.py [--providers cpu,cuda] [--stream] [--events 40000]

1. Per call: sequences/s and latency per call (median and p99 over repeated calls) of each
   shipped model at batch sizes 1, 8, 64, 256, 1024, for each provider asked for and
   available (``cuda`` needs onnxruntime-gpu and a GPU: ``make install ONNX=gpu``). With two
   providers it prints the smallest batch size where the GPU overtakes the CPU.
2. ``--stream`` (needs ``bedside stack up``): a Bedside worker consumes the same
   pre-produced records twice, once batched (max_batch 256) and once one window
   per call (max_batch 1); events/s and model calls, and the ratio, from one run.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploy.modelbench import BATCHES, per_call
from streams.scoring.onnx import SHIPPED_MODELS, ModelError, OnnxModel


def call_table(providers: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in ("glucose", "deterioration"):
        version = sorted(p.name for p in (SHIPPED_MODELS / name).iterdir())[-1]
        for provider in providers:
            try:
                model = OnnxModel(SHIPPED_MODELS / name / version, provider=provider)
            except ModelError as error:
                print(f"{name} on {provider}: skipped ({error})")  # noqa: T201
                continue
            for batch in BATCHES:
                rows.append(
                    {"model": model.key, "provider": model.provider, **per_call(model, batch)}
                )
    return rows


def stream_ratio(events: int, patients: int) -> dict[str, float]:
    from deploy.benchkit import produce, records, run_worker  # the stack's clients: only here
    from streams.engine.broker import ensure_bedside_topics
    from streams.settings import get_settings

    settings = get_settings()
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bedside-bench-scoring-"))
    bedside = str(Path(sys.executable).parent / "bedside")
    per_patient = max(2, events // patients)
    items = records(patients, per_patient, datetime.now(UTC) - timedelta(hours=1))
    result: dict[str, float] = {}
    for label, max_batch, port in (("batched", 256, 6091), ("one_at_a_time", 1, 6092)):
        prefix = f"bench.{run}.{label}."
        topics = get_settings(topics={"prefix": prefix}).topics
        asyncio.run(ensure_bedside_topics(settings.kafka, topics))
        asyncio.run(produce(settings, {"glucose": topics.glucose, "vitals": topics.vitals}, items))
        env = {
            **os.environ,
            "BEDSIDE_WORKER__LOG_LEVEL": "warning",
            "BEDSIDE_TOPICS__PREFIX": prefix,
            "BEDSIDE_WORKER__APP_ID": f"bench-scoring-{label}-{run}",
            "BEDSIDE_WEB__PORT": str(port),
            "BEDSIDE_SCORING__MAX_BATCH": str(max_batch),
        }
        rate = run_worker([bedside, "worker"], env, port, len(items), work / f"{label}.log")
        result[f"{label}_events_per_s"] = rate
    result["ratio"] = result["batched_events_per_s"] / result["one_at_a_time_events_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", default="cpu", help="comma-separated: cpu,cuda")
    parser.add_argument("--stream", action="store_true", help="also the in-stream ratio")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--patients", type=int, default=1000)
    args = parser.parse_args()
    rows = call_table(args.providers.split(","))
    print(
        f"{'model':<22} {'provider':<22} {'batch':>6} {'seq/s':>10} {'ms/call p50':>12} "  # noqa: T201
        f"{'p99':>8}"
    )
    for r in rows:
        print(
            f"{r['model']!s:<22} {r['provider']!s:<22} {r['batch']:>6} "  # noqa: T201
            f"{r['seq_per_s']:>10,.0f} {r['ms_per_call_p50']:>12.3f} {r['ms_per_call_p99']:>8.3f}"
        )
    crossover = {}
    for name in {str(r["model"]) for r in rows}:
        cpu = {
            r["batch"]: r["seq_per_s"]
            for r in rows
            if r["model"] == name and "CPU" in str(r["provider"])
        }
        gpu = {
            r["batch"]: r["seq_per_s"]
            for r in rows
            if r["model"] == name and "CUDA" in str(r["provider"])
        }
        faster = [b for b in BATCHES if b in cpu and b in gpu and gpu[b] > cpu[b]]
        if gpu:
            crossover[name] = faster[0] if faster else None
            print(f"{name}: GPU overtakes CPU at batch {crossover[name]}")  # noqa: T201
    out: dict[str, object] = {"bench": "scoring", "per_call": rows, "gpu_crossover": crossover}
    if args.stream:
        ratio = stream_ratio(args.events, args.patients)
        out["stream"] = ratio
        print(
            f"in-stream events/s batched {ratio['batched_events_per_s']:,.0f}, one window per "  # noqa: T201
            f"call {ratio['one_at_a_time_events_per_s']:,.0f}: {ratio['ratio']:.2f}x"
        )
    print(json.dumps(out, default=float))  # noqa: T201


if __name__ == "__main__":
    main()
