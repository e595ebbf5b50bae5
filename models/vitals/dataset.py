"""Vitals samples: simulated observations through the serving window and feature contract."""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.schemas.observation import Kind
from streams.scoring.base import PatientProfile
from streams.scoring.features import window_vitals_input
from streams.scoring.rule_scorers import News2Scorer
from streams.windows.patient import PatientWindow

from .sim import CODES, HOUR_MIN, SimulatedPatient, simulate

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HORIZON_H = 12  # label: the event happens within the next 12 h
LATENESS_MS = 2 * 3_600_000
MAX_SAMPLES = 288


@dataclass
class VitalsSamples:
    """One sample per observation set: the window as it stood right after the set."""

    x: np.ndarray  # (n, 24, 19)
    label: np.ndarray  # (n,) bool: event within HORIZON_H
    news2: np.ndarray  # (n,) NEWS2 total from the serving scorer (NaN if not computable)
    patient: np.ndarray  # (n,) patient index
    minute: np.ndarray  # (n,) minutes since admission

    def subset(self, mask: np.ndarray) -> VitalsSamples:
        return VitalsSamples(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def patient_samples(patient: SimulatedPatient, horizon_h: int = HORIZON_H) -> VitalsSamples:
    window = PatientWindow(str(patient.index))
    scorer, profile = News2Scorer(), PatientProfile()
    xs, labels, news2, minutes = [], [], [], []
    for minute, group in itertools.groupby(patient.observations, key=lambda o: o[0]):
        for _, signal, value in group:
            window.apply_value(
                CODES[signal],
                Kind.VITAL,
                BASE_MS + minute * 60_000,
                value,
                allowed_lateness_ms=LATENESS_MS,
                max_vital_samples=MAX_SAMPLES,
            )
        x = window_vitals_input(window)
        if x is None:  # a set of consciousness/oxygen only
            continue
        xs.append(x)
        score = scorer.score(window, profile)
        news2.append(np.nan if score is None or score.value is None else score.value)
        event = patient.event_min
        labels.append(event is not None and minute < event <= minute + horizon_h * HOUR_MIN)
        minutes.append(minute)
    n = len(xs)
    return VitalsSamples(
        np.stack(xs) if xs else np.zeros((0, 24, 19), np.float32),
        np.array(labels, bool),
        np.array(news2, float),
        np.full(n, patient.index),
        np.array(minutes),
    )


def _build(args: tuple[int, int, int]) -> tuple[VitalsSamples, SimulatedPatient]:
    index, days, seed = args
    patient = simulate(index, days, seed)
    return patient_samples(patient), patient


def concat(parts: list[VitalsSamples]) -> VitalsSamples:
    return VitalsSamples(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in VitalsSamples.__dataclass_fields__
        )
    )


def cohort(
    patients: int, days: int, seed: int, cache: Path, workers: int = 2
) -> tuple[VitalsSamples, np.ndarray, np.ndarray]:
    """Samples of a simulated cohort (cached), with each patient's stay (min) and pattern."""
    path = cache / f"vitals-cohort-{patients}p-{days}d-seed{seed}.npz"
    if path.exists():
        data = np.load(path)
        s = VitalsSamples(*(data[f] for f in VitalsSamples.__dataclass_fields__))
        return s, data["stay_minutes"], data["pattern"]
    jobs = [(i, days, seed) for i in range(patients)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        built = list(pool.map(_build, jobs, chunksize=50))
    s = concat([b[0] for b in built])
    stay = np.array([b[1].minutes for b in built])
    pattern = np.array([b[1].pattern or "" for b in built])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        stay_minutes=stay,
        pattern=pattern,
        **{f: getattr(s, f) for f in VitalsSamples.__dataclass_fields__},
    )
    return s, stay, pattern


def split_of(index: np.ndarray, seed: int) -> np.ndarray:
    """By patient: 70 % train, 10 % validation, 20 % test (a seeded hash of the index)."""
    u = np.random.default_rng(seed + 1).random(int(index.max()) + 1)[index]
    return np.where(u < 0.7, "train", np.where(u < 0.8, "validation", "test"))
