"""Benchmark building blocks shared by ``bedside bench`` and the scripts in ``bench/``.

Records of synthetic patients, producing them, starting workers on them and reading their
``/stats``, and the produce -> alert latency at a fixed rate.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.engine.broker import client_options
from streams.processing.state import PatientState
from streams.schemas.observation import Kind
from streams.scoring.personal import SETTLE_MS, personal_forecast
from streams.settings import Settings


def monitored_day(seed: int, end_ms: int, adapted_at: tuple[str, ...] = ("30",)) -> PatientState:
    """One patient's state after a day of 5-minute CGM, heart rate, SpO2 and respiratory
    rate ending at ``end_ms``, varying as real signals do (random walks; CGM to the unit,
    respiratory rate to a tenth; times a few seconds off the grid), with the glucose
    forecast's per-patient adaptation at ``adapted_at`` as the shipped gate serves it (a
    forecast of the latest reading plus 5 mg/dL: its bytes, not its figures, matter here)."""
    rnd = random.Random(seed)
    state = PatientState.new(f"bench-{seed:05d}")
    window = state.window
    hr, spo2, rr, glucose = 72.0, 97.0, 16.0, 120.0
    for k in range(288):
        t = end_ms - 86_400_000 + k * 300_000 + rnd.randint(0, 20) * 1000
        hr = min(180.0, max(40.0, hr + rnd.choice((-3, -1, 0, 0, 1, 3))))
        spo2 = min(100.0, max(85.0, spo2 + rnd.choice((-1, 0, 0, 0, 1))))
        rr = min(30.0, max(8.0, round(rr + rnd.uniform(-1, 1), 1)))
        glucose = min(400.0, max(40.0, glucose + rnd.uniform(-8, 8)))
        for code, kind, value in (
            ("99504-3", Kind.GLUCOSE, round(glucose)),
            ("8867-4", Kind.VITAL, hr),
            ("59408-5", Kind.VITAL, spo2),
            ("9279-1", Kind.VITAL, rr),
        ):
            window.apply_value(
                code, kind, t, value, allowed_lateness_ms=7_200_000, max_vital_samples=288
            )
        if adapted_at:
            _, _, state.personal = personal_forecast(
                state.personal,
                functools.partial(window.recent_cgm, SETTLE_MS),
                t,
                dict.fromkeys(adapted_at, round(glucose) + 5.0),
                model="glucose@2.3.0",
            )
    return state


def records(patients: int, per_patient: int, start: datetime) -> list[tuple[str, bytes, bytes]]:
    out = []
    for step in range(per_patient // 2):
        at = (start + timedelta(seconds=step)).isoformat()
        for p in range(patients):
            pid = f"bench-{p:05d}"
            glucose = 60.0 if (step + p) % 10 == 0 else 110.0 + (p % 7)
            for code, unit, value, kind in (
                ("99504-3", "mg/dL", glucose, "glucose"),
                ("8867-4", "/min", 70.0 + p % 20, "vitals"),
            ):
                body = {
                    "patient_id": pid,
                    "code": code,
                    "value": value,
                    "unit": unit,
                    "effective_at": at,
                    "source": "bench",
                    "event_id": f"{pid}-{code}-{step}",
                }
                out.append((kind, pid.encode(), orjson.dumps(body)))
    return out


async def produce(
    settings: Settings,
    topic_of: dict[str, str],
    items: list[tuple[str, bytes, bytes]],
    rate: float | None = None,
) -> None:
    producer = AIOKafkaProducer(
        linger_ms=10, max_batch_size=256 * 1024, **client_options(settings.kafka)
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for index, (kind, key, value) in enumerate(items):
            if rate and index % 100 == 0:
                ahead = index / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.send(topic_of[kind], value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return {}


@dataclass
class WorkerRun:
    """What a benchmark measured of workers on pre-produced records."""

    events_per_s: float
    rss_bytes: int  # the workers' resident memory at the end, summed
    stats: dict[str, Any]  # /stats of the first worker at the end
    # each worker's CPU seconds from its first consumed record to the end, and the events they
    # cover (all of the run's: the CPU clock starts before any record is worked on)
    cpu_s: list[float] = field(default_factory=list)
    measured_events: int = 0

    @property
    def cpu_s_per_1000(self) -> float:
        """The workers' CPU seconds (summed) per 1,000 events: what a deployment sizes on."""
        return 1000 * sum(self.cpu_s) / max(1, self.measured_events)


def run_worker(argv: list[str], env: dict[str, str], port: int, expected: int, log: Path) -> float:
    """Start a worker on pre-produced records; events/s from first to last processed."""
    return run_workers(argv, [(env, port, log)], expected)


def run_workers(
    argv: list[str], workers: list[tuple[dict[str, str], int, Path]], expected: int
) -> float:
    """Start workers (one group) on pre-produced records; their summed events/s from the first
    processed record to the last."""
    return measure_workers(argv, workers, expected).events_per_s


def finished(counters: dict[str, Any]) -> int:
    """Records a worker is done with: for Bedside, stored (every output acknowledged, the
    offset committable); for the reference agents, processed (what they can tell)."""
    return int(counters.get("records_stored", counters.get("observations", 0)))


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 where /proc cannot tell)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_workers(
    argv: list[str], workers: list[tuple[dict[str, str], int, Path]], expected: int
) -> WorkerRun:
    """``run_workers`` with the workers' memory and counters at the end."""
    processes = []
    for env, _, log in workers:
        with open(log, "wb") as out:
            processes.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        first_at = first_count = None
        # each worker's CPU seconds when it had consumed its first record (its start-up, model
        # loading and group join are not the events' cost; decoding and windowing start well
        # before the first record is stored, so the clock starts at consumption)
        cpu_at: list[float | None] = [None] * len(processes)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            for process, (_, _, log) in zip(processes, workers, strict=True):
                if process.poll() is not None:
                    msg = f"worker exited: see {log}"
                    raise SystemExit(msg)
            counters = [stats(port) for _, port, _ in workers]
            for i, (process, worker) in enumerate(zip(processes, counters, strict=True)):
                if cpu_at[i] is None and worker.get("records", 0):
                    cpu_at[i] = cpu_seconds(process.pid)
            done = sum(finished(worker) for worker in counters)
            now = time.perf_counter()
            if done and first_at is None:
                first_at, first_count = now, done
            if done >= expected and first_at is not None and first_count is not None:
                if done - first_count < expected // 4:
                    # the clock starts at the first processed record, so a run that mostly
                    # arrived in one fetch has no span to measure
                    msg = (
                        f"{first_count} of {expected} records were processed before the first "
                        "reading: too few to measure throughput; send more (--events)"
                    )
                    raise SystemExit(msg)
                rate = (done - first_count) / max(now - first_at, 1e-9)
                cpu = [
                    cpu_seconds(p.pid) - c
                    for p, c in zip(processes, cpu_at, strict=True)
                    if c is not None  # a worker that got no partition consumed nothing
                ]
                time.sleep(1.0)  # the last batch's windows are stored after it is counted
                return WorkerRun(
                    rate, sum(rss_bytes(p.pid) for p in processes), stats(workers[0][1]), cpu, done
                )
            time.sleep(0.05)
        msg = "workers did not finish in 900 s"
        raise SystemExit(msg)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


# Workers in the benchmarks score both model families (the heavier configuration; the
# service's default scores glucose only), unless the caller's environment says otherwise.
BOTH_MODELS = {"BEDSIDE_SCORING__MODELS": '["glucose","deterioration"]'}
PROBES_PER_S = 10  # patients whose glucose falls to an urgent low, each second


async def latency(
    settings: Settings, env_settings: Settings, patients: int, rate: float, seconds: int
) -> list[float]:
    """Produce ``rate`` events/s for ``seconds``: a population of ``patients`` visited in turn
    (CGM in range and heart rate, the load) and, each second, ``PROBES_PER_S`` new probe
    patients whose two CGM readings 1 s apart fall below 54 mg/dL (the second opens
    ``urgent_low``). Returns ms from producing each probe's second reading to receiving its
    opened alarm. Works for any number of patients, however few readings each gets."""
    topics = env_settings.topics
    consumer = AIOKafkaConsumer(
        topics.alerts, group_id=None, auto_offset_reset="latest", **client_options(settings.kafka)
    )
    await consumer.start()
    latencies: list[float] = []
    sent_at: dict[tuple[str, str], float] = {}  # (probe, event time) -> produce wall time

    async def collect() -> None:
        while True:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for record in batch:
                    event = orjson.loads(record.value)
                    if event["transition"] == "opened" and event["kind"] in ("low", "urgent_low"):
                        at = event["evidence"]["recent_cgm"][-1]["at"]
                        sent = sent_at.pop((event["patient_id"], at), None)
                        if sent is not None:
                            latencies.append((now - sent) * 1000)

    def body(pid: str, code: str, unit: str, value: float, at: str) -> bytes:
        document = {"patient_id": pid, "code": code, "value": value, "unit": unit,
                    "effective_at": at, "source": "bench"}  # fmt: skip
        return orjson.dumps(document)

    task = asyncio.create_task(collect())
    producer = AIOKafkaProducer(linger_ms=5, **client_options(settings.kafka))
    await producer.start()
    try:
        started = time.perf_counter()
        sent = visit = 0
        pending: list[str] = []  # probes that sent their first low reading a second ago
        for second in range(seconds):
            at = datetime.now(UTC).replace(microsecond=0).isoformat()
            for pid in pending:  # the second low: this one opens the alarm
                sent_at[(pid, at)] = time.time()
                value = body(pid, "99504-3", "mg/dL", 45.0, at)
                await producer.send(topics.glucose, value, key=pid.encode())
            pending = [f"probe-{second:04d}-{k}" for k in range(PROBES_PER_S)]
            for pid in pending:
                value = body(pid, "99504-3", "mg/dL", 50.0, at)
                await producer.send(topics.glucose, value, key=pid.encode())
            sent += 2 * PROBES_PER_S
            while sent < (second + 1) * rate:
                pid = f"lat-{visit % patients:06d}"
                visit += 1
                for topic, code, unit, value_of in (
                    (topics.glucose, "99504-3", "mg/dL", 110.0 + visit % 7),
                    (topics.vitals, "8867-4", "/min", 70.0 + visit % 20),
                ):
                    await producer.send(
                        topic, body(pid, code, unit, value_of, at), key=pid.encode()
                    )
                sent += 2
                if sent % 200 == 0:
                    ahead = sent / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            ahead = (second + 1) - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
        await asyncio.sleep(5)
    finally:
        await producer.stop()
        task.cancel()
        await consumer.stop()
    return latencies


def p50_p99(values: list[float]) -> tuple[float, float]:
    """Median and 99th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def measure_latency(
    argv: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    settings: Settings,
    lat_settings: Settings,
    patients: int,
    rate: float,
    seconds: int,
) -> list[float]:
    """Start a worker, wait until it is ready, run ``latency`` against it, stop it."""
    with open(log, "wb") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        return asyncio.run(latency(settings, lat_settings, patients, rate, seconds))
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def burst_records(
    run: str, patients: int, per_signal: int, start: datetime
) -> list[tuple[str, bytes, bytes]]:
    """CGM and heart rate every 5 min for each patient, the glucose topic's records all
    before the vitals topic's: a backlog whose topics are hours apart in event time."""
    out: list[tuple[str, bytes, bytes]] = []
    for kind, code, unit in (("glucose", "99504-3", "mg/dL"), ("vitals", "8867-4", "/min")):
        for step in range(per_signal):
            at = (start + timedelta(minutes=5 * step)).isoformat()
            for p in range(patients):
                pid = f"burst-{run}-{p:05d}"
                value = 110.0 + (step + p) % 40 if kind == "glucose" else 70.0 + p % 20
                body = {"patient_id": pid, "code": code, "value": value, "unit": unit,
                        "effective_at": at, "source": "bench"}  # fmt: skip
                out.append((kind, pid.encode(), orjson.dumps(body)))
    return out


def stored_points(url: str, run: str) -> tuple[int, int]:
    """(samples, distinct samples) of a burst run's CGM and heart-rate series."""
    from .tsdb import export_series, force_flush

    force_flush(url)
    samples = distinct = 0
    for metric in ("glucose_value", "vitals_value"):
        for series in export_series(url, f'{metric}{{patient_id=~"burst-{run}-.*"}}'):
            times = series["timestamps"]
            samples += len(times)
            distinct += len(set(times))
    return samples, distinct


def burst(
    settings: Settings, argv: list[str], env: dict[str, str], port: int, log: Path,
    patients: int = 1000, events: int = 200_000,
) -> dict[str, float | int]:  # fmt: skip
    """A burst of ``events`` over ``patients`` on fresh topics (``env`` names their prefix),
    one worker: events/s, and whether every accepted observation was stored exactly once and
    none of the in-order data was classed late."""
    from streams.settings import get_settings

    run = env["BEDSIDE_TOPICS__PREFIX"].strip(".").replace(".", "-")
    topics = get_settings(topics={"prefix": env["BEDSIDE_TOPICS__PREFIX"]}).topics
    per_signal = max(1, events // patients // 2)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5 * per_signal + 60)
    items = burst_records(run, patients, per_signal, start)
    asyncio.run(produce(settings, {"glucose": topics.glucose, "vitals": topics.vitals}, items))
    with open(log, "wb") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        first_at = first = None
        deadline = time.monotonic() + 600
        counts: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                msg = f"burst worker exited: see {log}"
                raise SystemExit(msg)
            counts = stats(port)
            done = counts.get("inserted", 0) + counts.get("late", 0) + counts.get("duplicates", 0)
            if done and first_at is None:
                first_at, first = time.perf_counter(), done
            if done >= len(items):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - (first_at or time.perf_counter())
        rate = (len(items) - (first or 0)) / elapsed if elapsed > 0 else float("nan")
        samples = distinct = 0
        while time.monotonic() < deadline:  # the last batches' points are being written
            samples, distinct = stored_points(settings.influx.url, run)
            if samples >= len(items):
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {
        "burst_events": len(items),
        "burst_events_per_s": rate,
        "burst_inserted": counts.get("inserted", 0),
        "burst_late": counts.get("late", 0),
        "burst_duplicates": counts.get("duplicates", 0),
        "burst_dead_letters": sum(counts.get("dead_letters", {}).values()),
        "burst_points_stored": samples,
        "burst_points_distinct": distinct,
    }
