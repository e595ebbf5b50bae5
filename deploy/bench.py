"""``bedside bench``: the whole pipeline and its parts, reproducibly, as a table and JSON.

Parts (in process): decode per format, window update with the rules, each shipped model per
batch size, time-series writes (needs the stack). Whole (needs ``bedside stack up``): one
worker's events/s on pre-produced records, produce -> alert latency at a fixed rate, one vs
two workers in a group. Synthetic and simulated patients only; fresh topics per run.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.engine.broker import ensure_bedside_topics
from streams.ingest.decode import decode_record
from streams.processing import codec
from streams.processing.pipeline import PatientBatch, PatientPipeline
from streams.processing.state import PatientState
from streams.scoring.onnx import SHIPPED_MODELS, OnnxModel
from streams.settings import Settings, get_settings

from .benchkit import (
    BOTH_MODELS,
    burst,
    measure_latency,
    measure_workers,
    p50_p99,
    produce,
    records,
)
from .modelbench import BATCHES, per_call

#: How the scale-out runs' keys tell the processing guarantees apart.
GUARANTEE_TAGS = {"at_least_once": "", "exactly_once": "eos_"}


def decode_rates(seconds: float = 1.0) -> dict[str, float]:
    from .simulate import build_cohort, encode

    cohort = build_cohort(6, 6, seed=5)
    cgm = [r for r in cohort.readings if r.code == "99504-3"][:500]
    received = datetime.now(UTC)
    out = {}
    for fmt in ("native", "fhir", "nightscout"):
        raws = [(encode(r, fmt, 0, f"b{i}"), r.patient_id.encode()) for i, r in enumerate(cgm)]
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for raw, key in raws:
                decode_record(raw, received_at=received, key=key)
            n += len(raws)
        out[fmt] = n / (time.perf_counter() - started)
    return out


def _same(value: Any) -> Any:
    return value


def window_rate(settings: Settings, patients: int = 100, steps: int = 288) -> tuple[float, float]:
    """(observations/s through windows + rules, mean stored window bytes) in process."""
    from streams.schemas.observation import Format, Kind, Observation

    pipeline = PatientPipeline(settings.stream)
    start = datetime.now(UTC) - timedelta(hours=24)
    batches = []
    for p in range(patients):
        obs = []
        for step in range(steps):
            at = start + timedelta(minutes=5 * step)
            for code, kind, value in (
                ("99504-3", Kind.GLUCOSE, 110.0 + step % 30),
                ("8867-4", Kind.VITAL, 72.0 + p % 9),
            ):
                obs.append(
                    Observation(
                        patient_id=f"w{p}",
                        kind=kind,
                        code=code,
                        value=value,
                        unit="x",
                        effective_at=at,
                        received_at=at,
                        source="b",
                        event_id=f"{p}-{code}-{step}",
                        format=Format.NATIVE,
                    )
                )
        batches.append(obs)

    async def apply_all() -> list[int]:
        sizes = []
        for p, obs in enumerate(batches):
            state: PatientState | None = None
            for chunk in range(0, len(obs), 20):
                patient = PatientBatch(
                    f"w{p}",
                    obs[chunk : chunk + 20],
                    load=functools.partial(_same, state),
                    stored=functools.partial(_same, None),
                )
                [result] = await pipeline.observations([patient])
                state = result.state
            sizes.append(len(codec.encode(state)) if state else 0)
        return sizes

    started = time.perf_counter()
    sizes = asyncio.run(apply_all())
    elapsed = time.perf_counter() - started
    return patients * steps * 2 / elapsed, statistics.mean(sizes)


def influx_rate(settings: Settings, points: int = 50_000) -> float | None:
    from streams.engine.series import InfluxSink

    async def write() -> float:
        sink = InfluxSink(settings.influx)
        await sink.start()
        try:
            run = uuid.uuid4().hex[:6]
            lines = [
                f"bench,run={run},patient_id=p{i % 500} value={i}.0 {1_700_000_000_000 + i}"
                for i in range(points)
            ]
            started = time.perf_counter()
            for start in range(0, points, 5000):
                await sink.write(lines[start : start + 5000])
            return points / (time.perf_counter() - started)
        finally:
            await sink.stop()

    try:
        return asyncio.run(write())
    except Exception:  # noqa: BLE001 - reported as not measured
        return None


def _latency(
    settings: Settings,
    bedside: list[str],
    base: dict[str, str],
    work: Path,
    run: str,
    label: str,
    count: int,
    rate: float,
) -> dict[str, Any]:
    """Produce -> alarm latency of one worker at ``rate`` over ``count`` patients."""
    prefix = f"bench.{run}.{label}lat."
    lat_settings = get_settings(topics={"prefix": prefix})
    asyncio.run(ensure_bedside_topics(settings.kafka, lat_settings.topics))
    env = {
        **base,
        "BEDSIDE_TOPICS__PREFIX": prefix,
        "BEDSIDE_WORKER__APP_ID": f"bench-{label}lat-{run}",
        "BEDSIDE_WEB__PORT": "6097",
    }
    log = work / f"{label}latency.log"
    latencies = measure_latency(bedside, env, 6097, log, settings, lat_settings, count, rate, 20)
    out: dict[str, Any] = {f"{label}latency_alerts": len(latencies)}
    if latencies:
        out[f"{label}latency_p50_ms"], out[f"{label}latency_p99_ms"] = p50_p99(latencies)
    return out


def whole(
    settings: Settings,
    events: int,
    patients: int,
    rate: float,
    burst_events: int = 0,
    sparse: tuple[int, int] | None = None,
    scale: tuple[int, ...] | None = None,
    guarantees: tuple[str, ...] = ("at_least_once",),
) -> dict[str, Any]:
    """End-to-end events/s with one and two workers (dense: ``patients``), one worker in the
    sparse regime (``sparse``: patients, events), and latency at ``rate`` in each.
    ``scale``: these worker counts in both regimes (scale-out), each with the workers' CPU
    seconds per 1,000 events, and no latency run; each count once per processing guarantee
    (``guarantees``, one after the other; keys of ``exactly_once`` runs start ``eos_``)."""
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bedside-bench-"))
    bedside = [str(Path(sys.executable).parent / "bedside"), "worker"]
    base = {**BOTH_MODELS, **os.environ, "BEDSIDE_WORKER__LOG_LEVEL": "warning"}
    out: dict[str, Any] = {}
    regimes: list[tuple[str, int, int, tuple[int, ...]]] = [("", patients, events, scale or (1, 2))]
    if sparse is not None:
        regimes.append(("sparse_", sparse[0], sparse[1], scale or (1,)))
    for label, count, total, worker_counts in regimes:
        start = datetime.now(UTC) - timedelta(hours=1)
        items = records(count, max(2, total // count), start)
        out[f"{label}events"] = len(items)
        out[f"{label}patients"] = count
        for workers, guarantee in itertools.product(worker_counts, guarantees):
            tag = f"{GUARANTEE_TAGS[guarantee]}{label}"
            prefix = f"bench.{run}.{tag}w{workers}."
            topics = get_settings(topics={"prefix": prefix}).topics
            asyncio.run(ensure_bedside_topics(settings.kafka, topics))
            topic_of = {"glucose": topics.glucose, "vitals": topics.vitals}
            asyncio.run(produce(settings, topic_of, items))
            group = f"bench-{run}-{tag}{workers}"
            specs = [
                (
                    {
                        **base,
                        "BEDSIDE_KAFKA__PROCESSING_GUARANTEE": guarantee,
                        "BEDSIDE_TOPICS__PREFIX": prefix,
                        "BEDSIDE_WORKER__APP_ID": group,
                        "BEDSIDE_WORKER__DATA_DIR": str(work / f"{group}-{i}"),
                        "BEDSIDE_WEB__PORT": str(6095 + i),
                    },
                    6095 + i,
                    work / f"{group}-{i}.log",
                )
                for i in range(workers)
            ]
            measured = measure_workers(bedside, specs, len(items))
            out[f"{tag}workers_{workers}_events_per_s"] = measured.events_per_s
            out[f"{tag}workers_{workers}_cpu_s_per_1000"] = measured.cpu_s_per_1000
            if guarantee != "at_least_once":
                continue
            if workers == 1:
                written = measured.stats.get("state_bytes", 0)
                observations = max(1, measured.stats.get("observations", 0))
                out[f"{label}rss_mb"] = measured.rss_bytes / 2**20
                out[f"{label}state_bytes_per_event"] = written / observations
        if scale is None:
            out.update(_latency(settings, bedside, base, work, run, label, count, rate))
    if burst_events:
        prefix = f"bench.{run}.burst."
        asyncio.run(
            ensure_bedside_topics(settings.kafka, get_settings(topics={"prefix": prefix}).topics)
        )
        env = {
            **base,
            "BEDSIDE_TOPICS__PREFIX": prefix,
            "BEDSIDE_WORKER__APP_ID": f"bench-burst-{run}",
            "BEDSIDE_WORKER__DATA_DIR": str(work / "burst"),
            "BEDSIDE_WEB__PORT": "6098",
        }
        out.update(burst(settings, bedside, env, 6098, work / "burst.log", patients, burst_events))
    return out


def run(
    events: int,
    patients: int,
    rate: float,
    parts_only: bool,
    burst_events: int = 0,
    sparse: tuple[int, int] | None = None,
    scale: tuple[int, ...] | None = None,
    guarantees: tuple[str, ...] = ("at_least_once",),
) -> dict[str, Any]:
    settings = get_settings()
    if scale is not None:  # scale-out only: end to end with these worker counts
        scaled = whole(settings, events, patients, rate, 0, sparse, scale, guarantees)
        return {"bench": "bedside-scale", "broker": settings.kafka.bootstrap, **scaled}
    result: dict[str, Any] = {"bench": "bedside", "decode_records_per_s": decode_rates()}
    result["window_events_per_s"], result["window_bytes_per_patient"] = window_rate(settings)
    result["scoring"] = [
        {"model": model.key, "provider": model.provider, **per_call(model, batch, 0.5)}
        for name in ("glucose", "deterioration")
        for model in [OnnxModel(sorted((SHIPPED_MODELS / name).iterdir())[-1])]
        for batch in BATCHES
    ]
    if not parts_only:
        result["influx_points_per_s"] = influx_rate(settings)
        result.update(whole(settings, events, patients, rate, burst_events, sparse))
    return result


def scale_table(result: dict[str, Any]) -> list[str]:
    """The scale-out runs: per regime, worker count and guarantee, events/s and CPU s per
    1,000 events."""
    lines = [f"broker {result['broker']}"]
    for label, regime in (("", "dense"), ("sparse_", "sparse")):
        patients = result.get(f"{label}patients")
        if patients is None:
            continue
        for guarantee, tag in GUARANTEE_TAGS.items():
            found = re.compile(rf"^{tag}{label}workers_(\d+)_events_per_s$")
            for key in sorted(k for k in result if found.match(k)):
                workers = found.match(key)[1]  # type: ignore[index]  # matched above
                cpu = result[f"{tag}{label}workers_{workers}_cpu_s_per_1000"]
                lines.append(
                    f"{regime} ({patients:,} patients), {workers} worker(s), {guarantee}: "
                    f"{result[key]:,.0f} events/s, {cpu:.3f} CPU s per 1,000 events"
                )
    return lines


def table(result: dict[str, Any]) -> list[str]:
    if result.get("bench") == "bedside-scale":
        return scale_table(result)
    rows = [
        (f"decode {fmt}, records/s", f"{v:,.0f}")
        for fmt, v in result["decode_records_per_s"].items()
    ]
    rows += [
        ("window + rules, events/s (in process)", f"{result['window_events_per_s']:,.0f}"),
        (
            "window bytes per patient (a day of CGM + HR)",
            f"{result['window_bytes_per_patient']:,.0f}",
        ),
    ]
    rows += [
        (
            f"{s['model']} batch {s['batch']}, seq/s (ms/call)",
            f"{s['seq_per_s']:,.0f} ({s['ms_per_call_p50']:.2f})",
        )
        for s in result["scoring"]
    ]
    if "influx_points_per_s" in result:
        value = result["influx_points_per_s"]
        rows.append(
            (
                "time-series writes, points/s",
                "n/a (stack down)" if value is None else f"{value:,.0f}",
            )
        )
    dense = f"dense ({result.get('patients', 0):,} patients)"
    sparse = f"sparse ({result.get('sparse_patients', 0):,} patients)"
    for key, label in (
        ("workers_1_events_per_s", f"{dense}: end to end, 1 worker, events/s"),
        ("workers_2_events_per_s", f"{dense}: end to end, 2 workers, events/s"),
        ("rss_mb", f"{dense}: worker RSS at the end, MiB"),
        ("state_bytes_per_event", f"{dense}: state bytes written per event"),
        ("latency_p50_ms", f"{dense}: produce -> alarm latency p50, ms"),
        ("latency_p99_ms", f"{dense}: produce -> alarm latency p99, ms"),
        ("latency_alerts", f"{dense}: alarms measured"),
        ("sparse_workers_1_events_per_s", f"{sparse}: end to end, 1 worker, events/s"),
        ("sparse_rss_mb", f"{sparse}: worker RSS at the end, MiB"),
        ("sparse_state_bytes_per_event", f"{sparse}: state bytes written per event"),
        ("sparse_latency_p50_ms", f"{sparse}: produce -> alarm latency p50, ms"),
        ("sparse_latency_p99_ms", f"{sparse}: produce -> alarm latency p99, ms"),
        ("sparse_latency_alerts", f"{sparse}: alarms measured"),
        ("burst_events_per_s", "burst (topics hours apart), 1 worker, events/s"),
        ("burst_points_distinct", "burst: points stored (distinct)"),
        ("burst_late", "burst: observations classed late"),
    ):
        if key in result:
            rows.append((label, f"{result[key]:,.0f}"))
    if "burst_events" in result:
        once = result["burst_points_stored"] == result["burst_points_distinct"]
        rows.append(
            (
                f"burst: {result['burst_events']:,} accepted, each stored exactly once",
                "yes" if once and result["burst_points_stored"] == result["burst_events"] else "NO",
            )
        )
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value:>18}" for name, value in rows]
