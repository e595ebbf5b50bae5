"""Glucose cohort (cached), patient split and training samples through the feature contract."""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.scoring.features import glucose_input

from ..nets import HORIZONS_MIN, HYPO_THRESHOLDS
from .sim import PATIENTS, STEP_MIN, PatientTrace, simulate_patient

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: simulated day 0 starts at midnight UTC
HISTORY_STEPS = 12  # a sample needs at least 1 h of history
HYPO_HORIZON_STEPS = 30 // STEP_MIN
# held out by virtual patient: test patients are never seen in training or tuning
TEST_PATIENTS = tuple(f"{g}#{i:03d}" for g in ("adolescent", "adult", "child") for i in (9, 10))
VALIDATION_PATIENTS = tuple(f"{g}#008" for g in ("adolescent", "adult", "child"))


def split_of(name: str) -> str:
    if name in TEST_PATIENTS:
        return "test"
    return "validation" if name in VALIDATION_PATIENTS else "train"


def _simulate(args: tuple[str, int, int]) -> PatientTrace:
    return simulate_patient(*args)


def cohort(
    days: int, seed: int, cache: Path, patients: tuple[str, ...] = PATIENTS, workers: int = 2
) -> list[PatientTrace]:
    """Simulate (or load the cached) cohort: ``days`` per virtual patient, seeded per patient."""
    label = (
        "all"
        if patients == PATIENTS
        else hashlib.sha1(",".join(patients).encode()).hexdigest()[:10]
    )
    path = cache / f"glucose-cohort-{label}-{days}d-seed{seed}.npz"
    full = cache / f"glucose-cohort-all-{days}d-seed{seed}.npz"
    for candidate in (path, full):  # the whole cohort's cache holds every patient
        if not candidate.exists():
            continue
        data = np.load(candidate)
        return [
            PatientTrace(
                name,
                data["minutes"],
                data[f"{name}/bg"],
                data[f"{name}/cgm"],
                data[f"{name}/artefact"],
            )
            for name in patients
        ]
    jobs = [(name, days, seed * 1000 + PATIENTS.index(name)) for name in patients]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        traces = list(pool.map(_simulate, jobs))
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {"minutes": traces[0].minutes}
    for trace in traces:
        arrays.update(
            {
                f"{trace.name}/bg": trace.bg,
                f"{trace.name}/cgm": trace.cgm,
                f"{trace.name}/artefact": trace.artefact,
            }
        )
    np.savez_compressed(path, **arrays)
    return traces


@dataclass
class GlucoseSamples:
    """One sample per CGM reading with 1 h of history and 1 h of future."""

    x: np.ndarray  # (n, 36, 6) model input
    future_bg: np.ndarray  # (n, 4) true glucose at +15/30/45/60 min
    hypo: np.ndarray  # (n, 2) true glucose < 70 / < 54 within 30 min
    patient: np.ndarray  # (n,) index into the traces
    step: np.ndarray  # (n,) 5-minute step of the sample
    cgm_now: np.ndarray
    bg_now: np.ndarray

    def subset(self, mask: np.ndarray) -> GlucoseSamples:
        return GlucoseSamples(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def samples(traces: list[PatientTrace]) -> GlucoseSamples:
    xs, futures, hypos, patients, steps, cgm_now, bg_now = [], [], [], [], [], [], []
    horizon_steps = [h // STEP_MIN for h in HORIZONS_MIN]
    for p, trace in enumerate(traces):
        times = BASE_MS + trace.minutes.astype(np.int64) * 60_000
        present = ~np.isnan(trace.cgm)
        readings = [
            (int(t), float(v)) for t, v, ok in zip(times, trace.cgm, present, strict=True) if ok
        ]
        cursor = 0
        last = max(horizon_steps)
        for i in range(HISTORY_STEPS, len(times) - last):
            if not present[i]:
                continue
            while cursor < len(readings) and readings[cursor][0] <= times[i]:
                cursor += 1
            history = readings[max(0, cursor - 36) : cursor]
            xs.append(glucose_input(history, int(times[i])))
            futures.append(trace.bg[[i + h for h in horizon_steps]])
            window = trace.bg[i + 1 : i + 1 + HYPO_HORIZON_STEPS]
            hypos.append([window.min() < t for t in HYPO_THRESHOLDS])
            patients.append(p)
            steps.append(i)
            cgm_now.append(trace.cgm[i])
            bg_now.append(trace.bg[i])
    return GlucoseSamples(
        np.stack(xs),
        np.array(futures, dtype=np.float32),
        np.array(hypos, dtype=bool),
        np.array(patients),
        np.array(steps),
        np.array(cgm_now),
        np.array(bg_now),
    )
