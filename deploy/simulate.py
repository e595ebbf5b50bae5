"""Simulated device streams: a cohort, its records in any ingest format, faults, ground truth.

Each patient has a CGM (a simglucose virtual patient with the realism of
``models.glucose.sim``: meals, bolus errors, sensor noise, compression lows, dropouts) and
every third one also ward vital signs (``models.vitals.sim``: 4-hourly sets, deterioration
episodes). Event times end at "now": a cohort of ``hours`` is laid out over the past
``hours`` and published in event-time order at ``speed`` times real time (0: at once), so
the stream sees a live-looking feed whose history it can check against ground truth.

Faults (``faults="default"``): 1 % duplicates (the same record again, later), 5 % out-of-order
(sent up to 10 simulated minutes late), a per-device clock skew of up to ±90 s on effective
times, 0.1 % malformed records (truncated JSON). Ground truth (true glucose < 70 mg/dL for
>= 15 min, deterioration events) goes to a JSON-lines file.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from streams.engine.broker import client_options
from streams.settings import Settings

MINUTE_MS = 60_000
CGM_CODE = "99504-3"
VITAL_UNITS = {
    "8867-4": "/min", "9279-1": "/min", "59408-5": "%", "8480-6": "mm[Hg]", "8310-5": "Cel",
    "67775-7": "{score}", "3151-8": "L/min",
}  # fmt: skip
FORMATS = ("native", "fhir", "nightscout", "mixed")


@dataclass(frozen=True, slots=True)
class Reading:
    t_ms: int  # true event time
    patient_id: str
    code: str
    value: float
    unit: str


@dataclass
class Cohort:
    readings: list[Reading]
    truth: list[dict[str, Any]]
    patients: list[str]
    start_ms: int
    end_ms: int


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _glucose(args: tuple[int, str, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    from models.glucose.sim import simulate_patient

    index, name, days, seed = args
    trace = simulate_patient(name, days, seed)
    return index, trace.bg, trace.cgm


def build_cohort(
    patients: int, hours: float, seed: int = 11, end_ms: int | None = None, workers: int = 2
) -> Cohort:
    """Readings and ground truth of ``patients`` over the ``hours`` ending at ``end_ms``."""
    from models.glucose.sim import PATIENTS, STEP_MIN
    from models.vitals.sim import CODES, simulate

    end_ms = end_ms or int(time.time() * 1000) - MINUTE_MS
    start_ms = end_ms - int(hours * 60 * MINUTE_MS)
    ids = [f"sim-{i:04d}" for i in range(patients)]
    # each patient's window starts at a different time of their simulated day (6:00-19:00),
    # so a short demo still sees meals, exercise and nights across the cohort
    offsets = [(6 + (5 * i) % 14) * 60 // STEP_MIN for i in range(patients)]
    jobs = [
        (
            i,
            PATIENTS[i % len(PATIENTS)],
            (offsets[i] * STEP_MIN / 60 + hours) / 24,
            seed * 10_000 + i,
        )
        for i in range(patients)
    ]
    readings: list[Reading] = []
    truth: list[dict[str, Any]] = []
    steps = int(hours * 60 // STEP_MIN)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for index, bg_all, cgm_all in pool.map(_glucose, jobs):
            pid = ids[index]
            bg = bg_all[offsets[index] : offsets[index] + steps]
            cgm = cgm_all[offsets[index] : offsets[index] + steps]
            for k in range(len(cgm)):
                if not np.isnan(cgm[k]):
                    t = start_ms + k * STEP_MIN * MINUTE_MS
                    readings.append(Reading(t, pid, CGM_CODE, float(cgm[k]), "mg/dL"))
            below = bg < 70
            k = 0
            while k < len(bg):
                if below[k]:
                    j = k
                    while j < len(bg) and below[j]:
                        j += 1
                    if j - k >= 3:
                        truth.append(
                            {
                                "patient_id": pid,
                                "kind": "hypoglycaemia",
                                "onset": _iso(start_ms + k * STEP_MIN * MINUTE_MS),
                                "end": _iso(start_ms + j * STEP_MIN * MINUTE_MS),
                            }
                        )
                    k = j
                else:
                    k += 1
    span = int(hours * 60)
    for i in range(0, patients, 3):  # every third patient is also on the ward
        ward = simulate(i, max(1, math.ceil(hours / 24) + 1), seed)
        # the window ends an hour after a deterioration event when there is one
        end = ward.event_min + 60 if ward.event_min is not None else span
        first = max(0, end - span)
        for minute, signal, value in ward.observations:
            if first <= minute < first + span:
                code = CODES[signal]
                at = start_ms + (minute - first) * MINUTE_MS
                readings.append(Reading(at, ids[i], code, value, VITAL_UNITS[code]))
        if ward.event_min is not None and first <= ward.event_min < first + span:
            truth.append(
                {
                    "patient_id": ids[i],
                    "kind": "deterioration",
                    "pattern": ward.pattern,
                    "onset": _iso(start_ms + ((ward.onset_min or 0) - first) * MINUTE_MS),
                    "event": _iso(start_ms + (ward.event_min - first) * MINUTE_MS),
                }
            )
    readings.sort(key=lambda r: r.t_ms)
    return Cohort(readings, truth, ids, start_ms, end_ms)


def encode(reading: Reading, fmt: str, skew_ms: int, event_id: str) -> bytes:
    """One record of ``fmt`` (Nightscout carries CGM only; other signals go native)."""
    at = _iso(reading.t_ms + skew_ms)
    if fmt == "nightscout" and reading.code == CGM_CODE:
        return orjson.dumps(
            {
                "type": "sgv",
                "sgv": round(reading.value),
                "date": reading.t_ms + skew_ms,
                "dateString": at,
                "device": "bedside-sim",
            }
        )
    if fmt == "fhir":
        return orjson.dumps(
            {
                "resourceType": "Observation",
                "id": event_id,
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": reading.code}]},
                "subject": {"reference": f"Patient/{reading.patient_id}"},
                "effectiveDateTime": at,
                "valueQuantity": {
                    "value": reading.value,
                    "unit": reading.unit,
                    "system": "http://unitsofmeasure.org",
                    "code": reading.unit,
                },
            }
        )
    return orjson.dumps(
        {
            "patient_id": reading.patient_id,
            "code": reading.code,
            "value": reading.value,
            "unit": reading.unit,
            "effective_at": at,
            "source": "bedside-sim",
            "event_id": event_id,
        }
    )


@dataclass
class Plan:
    """What will be sent, when (simulated ms), with which faults."""

    # (send at, topic, key, value, effective time as the window shows it)
    sends: list[tuple[int, str, bytes, bytes, str]] = field(default_factory=list)
    produced_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (patient, at)
    counts: dict[str, int] = field(default_factory=dict)


def plan(
    cohort: Cohort, settings: Settings, fmt: str = "native", faults: str = "default", seed: int = 11
) -> Plan:
    rng = np.random.default_rng(seed)
    topics = settings.topics
    skew = {p: int(rng.uniform(-90, 90)) * 1000 if faults != "none" else 0 for p in cohort.patients}
    formats = {
        p: (FORMATS[i % 3] if fmt == "mixed" else fmt) for i, p in enumerate(cohort.patients)
    }
    out = Plan(counts={"records": 0, "duplicates": 0, "late": 0, "malformed": 0})
    for n, r in enumerate(cohort.readings):
        topic = topics.glucose if r.code == CGM_CODE else topics.vitals
        value = encode(r, formats[r.patient_id], skew[r.patient_id], f"{r.patient_id}-{n}")
        at = _iso((r.t_ms + skew[r.patient_id]) // 1000 * 1000)
        key = r.patient_id.encode()
        send_at = r.t_ms
        if faults != "none":
            if rng.random() < 0.05:
                send_at += int(rng.uniform(1, 10) * MINUTE_MS)
                out.counts["late"] += 1
            if rng.random() < 0.01:
                out.sends.append((send_at + 2 * MINUTE_MS, topic, key, value, at))
                out.counts["duplicates"] += 1
            if rng.random() < 0.001:
                out.sends.append((send_at, topic, key, value[: len(value) // 2], ""))
                out.counts["malformed"] += 1
        out.sends.append((send_at, topic, key, value, at))
        out.counts["records"] += 1
    out.sends.sort(key=lambda s: s[0])
    return out


class Pacer:
    """Holds a producer to ``speed`` x real time over simulated (event) milliseconds."""

    def __init__(self, producer: AIOKafkaProducer, speed: float, first_ms: int) -> None:
        self.producer, self.speed, self.first = producer, speed, first_ms
        self.wall0 = time.perf_counter()

    async def wait(self, t_ms: int) -> None:
        if self.speed <= 0:
            return
        ahead = (t_ms - self.first) / 1000 / self.speed - (time.perf_counter() - self.wall0)
        if ahead > 0:
            await self.producer.flush()  # what is due goes out before we sleep
            await asyncio.sleep(ahead)


async def publish(
    settings: Settings,
    cohort: Cohort,
    the_plan: Plan,
    speed: float,
    progress: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send the plan in simulated-time order at ``speed`` x real time; returns records sent."""
    producer = AIOKafkaProducer(
        linger_ms=20, max_batch_size=512 * 1024, **client_options(settings.kafka)
    )
    await producer.start()
    sent = 0
    try:
        pacer = Pacer(producer, speed, the_plan.sends[0][0] if the_plan.sends else 0)
        for t, topic, key, value, at in the_plan.sends:
            if stop is not None and stop.is_set():
                break
            await pacer.wait(t)
            await producer.send(topic, value, key=key)
            sent += 1
            if at:
                the_plan.produced_at.setdefault((key.decode(), at), time.time())
            if progress is not None and sent % 500 == 0:
                progress(sent, len(the_plan.sends))
        await producer.flush()
    finally:
        await producer.stop()
    if progress is not None:
        progress(sent, len(the_plan.sends))
    return sent
