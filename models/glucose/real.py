"""Real CGM (Shanghai T1DM/T2DM) replayed through the serving window, as the stream sees it.

Each visit's CGM readings become Bedside observations applied to a serving
:class:`~streams.windows.patient.PatientWindow`; at every reading the model input is built by
the serving feature contract (time of day in the patient's own zone, UTC+08:00 here) and the
baselines by the serving rule's own AR2 code. Targets are the patient's **future CGM**
readings (what exists in the real world), not plasma glucose.

The data folder comes from ``BEDSIDE_DATA_DIR`` (default ``../shared/data``); see its README
for the sources and licences (Zhao et al., Scientific Data 2023, CC BY 4.0). Patients are split
by their number (several visits of one patient share it), stratified by population, with a
hash: the same split on every machine, a test part that chooses nothing.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from streams.rules import glucose as rules
from streams.schemas.observation import Kind
from streams.scoring.families import HORIZONS_MIN
from streams.scoring.features import window_glucose_input
from streams.windows.patient import CGM_CODE, PatientWindow

DEFAULT_DATA = Path("../shared/data")
SHANGHAI = Path("cgm/shanghai")
CST = timezone(timedelta(hours=8))  # the files' local time (China Standard Time)
CST_OFFSET_MIN = 480
LATENESS_MS = 2 * 3_600_000
TOLERANCE_MIN = 7.5  # a future reading counts for a horizon within half a 15-min step
HYPO_HORIZON_MIN = 30
MAX_GAP_MS = 35 * 60_000  # a sample needs the reading before it within 35 min
SPLITS = ("train", "validation", "test")
SOURCE = (
    "ShanghaiT1DM/T2DM (Zhao et al., Scientific Data 10:35, 2023; CC BY 4.0): real CGM, "
    "15-min, inpatients with type 1 and type 2 diabetes, China"
)


def data_dir() -> Path:
    return Path(os.environ.get("BEDSIDE_DATA_DIR", DEFAULT_DATA))


@dataclass(frozen=True)
class Visit:
    """One hospital visit's CGM: times in ms (UTC) and mg/dL, oldest first."""

    patient: str  # "T1D-1002": population and the patient's number
    population: str  # "T1D" | "T2D"
    name: str  # the file's stem
    times_ms: np.ndarray
    mg_dl: np.ndarray
    utc_offset_min: int = CST_OFFSET_MIN


class DataMissing(RuntimeError):
    """The real data folder is not there (tests skip, commands say where they looked)."""


def load_shanghai(root: Path | None = None) -> list[Visit]:
    """Every visit of both cohorts; readings outside a CGM's 40-400 mg/dL range are kept
    as the sensor reported them (clipped by the feature contract, as in serving)."""
    base = (root or data_dir()) / SHANGHAI
    if not base.is_dir():
        msg = f"no Shanghai CGM data at {base} (set BEDSIDE_DATA_DIR)"
        raise DataMissing(msg)
    visits = []
    for folder, population in (("T1DM", "T1D"), ("T2DM", "T2D")):
        for path in sorted((base / folder).glob("*.csv")):
            visit = read_visit(path, population)
            if len(visit.times_ms):
                visits.append(visit)
    return visits


def read_visit(path: Path, population: str) -> Visit:
    times, values = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            raw = (row.get("CGM (mg / dl)") or "").strip()
            if not raw:
                continue
            local = datetime.fromisoformat(row["Date"].strip())  # local time, no zone
            times.append(int(local.replace(tzinfo=CST).timestamp() * 1000))
            values.append(float(raw))
    order = np.argsort(times, kind="stable")
    number = path.stem.split("_")[0]
    return Visit(
        f"{population}-{number}",
        population,
        path.stem,
        np.asarray(times, np.int64)[order],
        np.asarray(values, float)[order],
    )


def split_of(patient: str, population_patients: list[str]) -> str:
    """60/20/20 by a hash rank within the population: deterministic, never by visit."""
    ranked = sorted(population_patients, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    rank = ranked.index(patient) / len(ranked)
    return "test" if rank < 0.2 else "validation" if rank < 0.4 else "train"


def splits(visits: list[Visit]) -> dict[str, str]:
    """Patient -> split."""
    by_population: dict[str, list[str]] = {}
    for visit in visits:
        members = by_population.setdefault(visit.population, [])
        if visit.patient not in members:
            members.append(visit.patient)
    return {p: split_of(p, members) for members in by_population.values() for p in members}


def limit(visits: list[Visit], split: dict[str, str], per_part: int | None) -> list[Visit]:
    """The visits of at most ``per_part`` patients per split and population (tests)."""
    if per_part is None:
        return visits
    chosen: dict[tuple[str, str], list[str]] = {}
    for patient, part in sorted(split.items()):
        chosen.setdefault((part, patient.split("-")[0]), []).append(patient)
    allowed = {p for members in chosen.values() for p in members[:per_part]}
    return [v for v in visits if v.patient in allowed]


def resample(visit: Visit, every_min: int) -> Visit:
    """Keep one reading per ``every_min`` (a slower sensor): 15-min data to 30, 5 to 15."""
    slots = visit.times_ms // (every_min * 60_000)
    keep = np.r_[True, slots[1:] != slots[:-1]]
    return Visit(
        visit.patient,
        visit.population,
        visit.name,
        visit.times_ms[keep],
        visit.mg_dl[keep],
        visit.utc_offset_min,
    )


def interpolate(visit: Visit, every_min: int = 5, noise_mg_dl: float = 2.0, seed: int = 0) -> Visit:
    """A denser sensor from this visit's readings: linear interpolation between readings at
    most 20 min apart, with sensor-like noise. An approximation of a 5-min sensor (real
    5-min data is not in the folder); figures on it are labelled as such."""
    step = every_min * 60_000
    grid = np.arange(visit.times_ms[0], visit.times_ms[-1] + 1, step, dtype=np.int64)
    after = np.clip(np.searchsorted(visit.times_ms, grid), 1, len(visit.times_ms) - 1)
    gap = visit.times_ms[after] - visit.times_ms[after - 1]
    exact = np.isin(grid, visit.times_ms)
    keep = exact | (gap <= 20 * 60_000)
    grid = grid[keep]
    values = np.interp(grid, visit.times_ms, visit.mg_dl)
    rng = np.random.default_rng(seed + int(hashlib.sha256(visit.name.encode()).hexdigest()[:8], 16))
    values = np.where(
        np.isin(grid, visit.times_ms), values, values + rng.normal(0, noise_mg_dl, len(grid))
    )
    return Visit(
        visit.patient, visit.population, visit.name, grid, np.round(values, 1), visit.utc_offset_min
    )


@dataclass
class Replay:
    """One sample per CGM reading after the first hour whose previous reading is at most
    35 min older (a 30-min sensor still counts; a restart after a gap does not)."""

    x: np.ndarray  # (n, 36, 6) the served model input
    future: np.ndarray  # (n, 4) future CGM at +15/30/45/60 min (NaN: no reading then)
    hypo: np.ndarray  # (n, 2) a CGM reading < 70 / < 54 within 30 min
    hypo_known: np.ndarray  # (n,) at least one reading in the next 30 min
    ar2: np.ndarray  # (n, 4) the serving AR2 forecast (last value where it cannot run)
    linear: np.ndarray  # (n, 4) least-squares slope over the last 15 min, extrapolated
    ar2_low: np.ndarray  # (n,) the serving AR2 rule's predicted_low condition
    now: np.ndarray  # (n,) CGM at the sample
    t_ms: np.ndarray  # (n,) time of the sample
    visit: np.ndarray  # (n,) index into the visits
    patient: np.ndarray  # (n,) patient id

    def subset(self, mask: np.ndarray) -> Replay:
        return Replay(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def _future(times: np.ndarray, values: np.ndarray, i: int) -> list[float]:
    out = []
    for horizon in HORIZONS_MIN:
        target = times[i] + horizon * 60_000
        j = int(np.searchsorted(times, target))
        best = [k for k in (j - 1, j) if 0 <= k < len(times)]
        k = min(best, key=lambda k: abs(int(times[k]) - target))
        close = abs(int(times[k]) - target) <= TOLERANCE_MIN * 60_000 and k > i
        out.append(float(values[k]) if close else np.nan)
    return out


def _linear(times: np.ndarray, values: np.ndarray, i: int) -> list[float]:
    start = int(np.searchsorted(times, times[i] - 15 * 60_000))
    t = (times[start : i + 1] - times[i]) / 60_000
    v = values[start : i + 1]
    slope = float(np.polyfit(t, v, 1)[0]) if len(v) >= 2 else 0.0
    return [float(np.clip(values[i] + slope * h, 40, 400)) for h in HORIZONS_MIN]


def replay(visits: Iterable[Visit], low: float = 70.0) -> Replay:
    """Apply every reading to a serving window; a sample at each reading with 1 h history."""
    columns: dict[str, list[object]] = {f: [] for f in Replay.__dataclass_fields__}
    steps = max(HORIZONS_MIN) // 5
    for index, visit in enumerate(visits):
        window = PatientWindow(visit.patient)
        times, values = visit.times_ms, visit.mg_dl
        for i in range(len(times)):
            window.apply_value(
                CGM_CODE,
                Kind.GLUCOSE,
                int(times[i]),
                float(values[i]),
                allowed_lateness_ms=LATENESS_MS,
                max_vital_samples=1,
            )
            if times[i] - times[0] < 3_600_000 or i == 0 or times[i] - times[i - 1] > MAX_GAP_MS:
                continue  # under 1 h of data, or the reading before is too far back
            x = window_glucose_input(window, visit.utc_offset_min)
            assert x is not None
            ahead = (times > times[i]) & (times <= times[i] + HYPO_HORIZON_MIN * 60_000)
            recent = window.recent_cgm(20 * 60_000)  # what the serving AR2 scorer reads
            forecast = rules.ar2_forecast_ms(recent, steps=steps)
            ar2 = (
                [forecast[h // 5 - 1][1] for h in HORIZONS_MIN]
                if forecast
                else [values[i]] * len(HORIZONS_MIN)
            )
            ar2_low = bool(forecast) and min(v for _, v in forecast[:6]) < low
            columns["x"].append(x)
            columns["future"].append(_future(times, values, i))
            columns["hypo"].append([values[ahead].min(initial=999) < t for t in (70.0, 54.0)])
            columns["hypo_known"].append(bool(ahead.any()))
            columns["ar2"].append(ar2)
            columns["linear"].append(_linear(times, values, i))
            columns["ar2_low"].append(ar2_low and values[i] >= low)
            columns["now"].append(float(values[i]))
            columns["t_ms"].append(int(times[i]))
            columns["visit"].append(index)
            columns["patient"].append(visit.patient)
    return Replay(
        np.stack(columns["x"]).astype(np.float32),  # type: ignore[arg-type]
        np.array(columns["future"], np.float32),
        np.array(columns["hypo"], bool),
        np.array(columns["hypo_known"], bool),
        np.array(columns["ar2"], np.float32),
        np.array(columns["linear"], np.float32),
        np.array(columns["ar2_low"], bool),
        np.array(columns["now"], np.float32),
        np.array(columns["t_ms"], np.int64),
        np.array(columns["visit"], np.int64),
        np.array(columns["patient"]),
    )
