"""The feature contract: how a patient's window becomes a model's input array.

One function per model family, used by serving (``streams``) and by the dataset builders
(``models``) alike, so training and scoring cannot drift apart. Each contract has a hash over
its specification and the source of its function; a model's manifest records the hash it was
trained with and the scorer refuses a model whose hash differs from the serving code's.

Inputs are plain sequences of ``(event time ms, value)``, oldest first, as the window keeps
them; outputs are float32 arrays ``(steps, channels)``, oldest step first.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..windows.patient import PatientWindow

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    steps: int
    step_minutes: int
    channels: tuple[str, ...]

    def spec(self) -> dict[str, object]:
        return asdict(self)


# -- glucose ---------------------------------------------------------------------------
GLUCOSE = Contract(
    name="cgm-5min-3h",
    version=1,
    steps=36,  # 3 h of 5-minute slots, the slot of the latest reading last
    step_minutes=5,
    channels=(
        "log_glucose",  # ln(mg/dL / 140), carried forward over gaps
        "observed",  # 1 where the slot holds a reading
        "hours_since_reading",  # capped at 1
        "rate_per_min",  # mg/dL/min over the last 15 min, / 2
        "time_of_day_sin",
        "time_of_day_cos",
    ),
)
GLUCOSE_CENTER = 140.0  # mg/dL, as Nightscout's AR2
GLUCOSE_CLIP = (39.0, 401.0)  # a CGM's reporting range


def glucose_trend(x: np.ndarray) -> np.ndarray:
    """The 15-min rate of change the glucose model reads at its latest step (mg/dL/min),
    from inputs (..., steps, channels): what ``predicted_low``'s "falling" condition tests,
    in serving and in evaluation alike."""
    trend: np.ndarray = x[..., -1, GLUCOSE.channels.index("rate_per_min")] * 2.0
    return trend


def glucose_input(
    cgm: Sequence[tuple[int, float]], now_ms: int, utc_offset_minutes: int = 0
) -> np.ndarray:
    """CGM readings up to ``now_ms`` as the glucose model's (36, 6) input."""
    out: np.ndarray = glucose_inputs([cgm], [now_ms], [utc_offset_minutes])[0]
    return out


def _flatten(
    series: Sequence[Sequence[tuple[int, float]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, time ms, value) of every sample of every series, in order."""
    counts = [len(s) for s in series]
    rows = np.repeat(np.arange(len(series)), counts)
    pairs = np.array([p for s in series for p in s], dtype=np.float64).reshape(-1, 2)
    return rows, pairs[:, 0].astype(np.int64), pairs[:, 1]


def glucose_inputs(
    cgm: Sequence[Sequence[tuple[int, float]]],
    now_ms: Sequence[int],
    utc_offset_minutes: Sequence[int],
) -> np.ndarray:
    """Many patients' CGM readings as the glucose model's (N, 36, 6) input, at once.

    Row ``i``: the readings ``cgm[i]`` (oldest first) up to ``now_ms[i]``, time of day at
    ``utc_offset_minutes[i]``."""
    slot_ms = GLUCOSE.step_minutes * MINUTE_MS
    n, steps = len(cgm), GLUCOSE.steps
    first_slot = np.asarray(now_ms, dtype=np.int64) // slot_ms - steps + 1
    values = np.full((n, steps), np.nan)
    rows, t, v = _flatten(cgm)
    index = t // slot_ms - first_slot[rows]
    inside = (index >= 0) & (index < steps)
    cells = rows[inside] * steps + index[inside]
    # a slot keeps its latest reading: the last of repeated cells wins
    cells_reversed = cells[::-1]
    unique, last_of = np.unique(cells_reversed, return_index=True)
    values.reshape(-1)[unique] = v[inside][::-1][last_of]
    out = np.zeros((n, steps, len(GLUCOSE.channels)), dtype=np.float32)
    observed = ~np.isnan(values)
    offsets = np.asarray(utc_offset_minutes, dtype=np.int64)[:, None]
    minutes = (first_slot[:, None] + np.arange(steps)) * GLUCOSE.step_minutes + offsets
    angle = 2 * math.pi * (minutes % 1440) / 1440
    out[:, :, 4], out[:, :, 5] = np.sin(angle), np.cos(angle)
    any_reading = observed.any(axis=1)
    indices = np.where(observed, np.arange(steps), -1)
    last = np.maximum.accumulate(indices, axis=1)  # the latest reading at or before a step
    first = np.argmax(observed, axis=1)[:, None]
    filled = np.take_along_axis(values, np.where(last >= 0, last, first), axis=1)
    mg_dl = np.clip(np.where(any_reading[:, None], filled, GLUCOSE_CENTER), *GLUCOSE_CLIP)
    since = np.where(last >= 0, np.arange(steps) - last, steps) * GLUCOSE.step_minutes / 60
    rate = np.zeros((n, steps))
    rate[:, 3:] = (mg_dl[:, 3:] - mg_dl[:, :-3]) / 15.0
    rate[np.arange(steps) < first + 3] = 0.0  # no slope across the back-filled start
    out[:, :, 0] = np.where(any_reading[:, None], np.log(mg_dl / GLUCOSE_CENTER), 0.0)
    out[:, :, 1] = observed
    out[:, :, 2] = np.where(any_reading[:, None], np.minimum(since, 1.0), 1.0)
    out[:, :, 3] = np.where(any_reading[:, None], rate / 2.0, 0.0)
    return out


# -- vital signs -----------------------------------------------------------------------
@dataclass(frozen=True)
class VitalSignal:
    name: str
    codes: tuple[str, ...]
    center: float  # a typical adult value: what a never-measured signal reads as
    scale: float


VITAL_SIGNALS = (
    VitalSignal("heart_rate", ("8867-4",), 80.0, 20.0),
    VitalSignal("respiratory_rate", ("9279-1",), 16.0, 5.0),
    VitalSignal("spo2", ("59408-5", "2708-6"), 96.0, 4.0),
    VitalSignal("systolic_bp", ("8480-6",), 125.0, 20.0),
    VitalSignal("temperature", ("8310-5",), 37.0, 0.8),
    VitalSignal("consciousness", ("67775-7",), 0.0, 2.0),
)
OXYGEN_CODES = ("3151-8", "3150-0")  # flow L/min (> 0) or FiO2 % (> 21): supplemental oxygen
DEVIATION_CLIP = 6.0
VITALS = Contract(
    name="vitals-1h-24h",
    version=1,
    steps=24,  # hourly bins over the last 24 h, the bin holding now last
    step_minutes=60,
    channels=tuple(
        f"{s.name}_{part}" for s in VITAL_SIGNALS for part in ("value", "observed", "deviation")
    )
    + ("on_oxygen",),
)


def vitals_input(
    vitals: Mapping[str, Sequence[tuple[int, float]]],
    baselines: Mapping[str, tuple[float, float] | None],
    now_ms: int,
) -> np.ndarray:
    """Vital signs of the last 24 h as the deterioration model's (24, 19) input.

    ``baselines`` maps a code to its personal (median, robust sd), or None while unknown.
    """
    out: np.ndarray = vitals_inputs([vitals], [baselines], [now_ms])[0]
    return out


def _hourly(
    samples: Sequence[Sequence[tuple[int, float]]], first_bin: np.ndarray, now: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(cell = row * steps + bin, value) of the samples inside each row's 24 bins."""
    rows, t, v = _flatten(samples)
    index = t // (VITALS.step_minutes * MINUTE_MS) - first_bin[rows]
    inside = (index >= 0) & (index < VITALS.steps) & (t <= now[rows])
    return rows[inside] * VITALS.steps + index[inside], v[inside]


def _carried(observed: np.ndarray) -> np.ndarray:
    """Per step, the latest observed step at or before it (-1 before the first)."""
    steps = observed.shape[1]
    return np.maximum.accumulate(np.where(observed, np.arange(steps), -1), axis=1)


def vitals_inputs(
    vitals: Sequence[Mapping[str, Sequence[tuple[int, float]]]],
    baselines: Sequence[Mapping[str, tuple[float, float] | None]],
    now_ms: Sequence[int],
) -> np.ndarray:
    """Many patients' vital signs as the deterioration model's (N, 24, 19) input, at once."""
    n, steps = len(vitals), VITALS.steps
    bin_ms = VITALS.step_minutes * MINUTE_MS
    now = np.asarray(now_ms, dtype=np.int64)
    first_bin = now // bin_ms - steps + 1
    out = np.zeros((n, steps, len(VITALS.channels)), dtype=np.float32)
    for s_index, signal in enumerate(VITAL_SIGNALS):
        flat_sums, flat_counts = np.zeros(n * steps), np.zeros(n * steps)
        for code in signal.codes:  # codes in order, samples in order: the sums' order
            cells, v = _hourly([p.get(code, ()) for p in vitals], first_bin, now)
            flat_sums += np.bincount(cells, weights=v, minlength=n * steps)
            flat_counts += np.bincount(cells, minlength=n * steps)
        sums, counts = flat_sums.reshape(n, steps), flat_counts.reshape(n, steps)
        observed = counts > 0
        column = 3 * s_index
        means = np.where(observed, sums / np.maximum(counts, 1), np.nan)
        last = _carried(observed)
        carried = np.take_along_axis(means, np.maximum(last, 0), axis=1)
        filled = np.where(last >= 0, carried, signal.center)
        out[:, :, column] = (filled - signal.center) / signal.scale
        out[:, :, column + 1] = observed
        known = [_first_baseline(b, signal.codes) for b in baselines]
        has = np.array([k is not None for k in known])
        if not has.any():
            continue
        center = np.array([k[0] if k else 0.0 for k in known])[:, None]
        spread = np.array([k[1] if k else 1.0 for k in known])[:, None]
        z = (filled - center) / np.maximum(spread, 1e-6 + np.abs(center) * 0.01)
        clipped = np.where(last >= 0, np.clip(z, -DEVIATION_CLIP, DEVIATION_CLIP), 0)
        out[has, :, column + 2] = clipped[has]
        out[has, :, column + 2] /= 3.0
    flat_oxygen = np.full(n * steps, -1.0)
    for code in OXYGEN_CODES:
        room_air = 0.0 if code == "3151-8" else 21.0
        cells, v = _hourly([p.get(code, ()) for p in vitals], first_bin, now)
        np.maximum.at(flat_oxygen, cells, (v > room_air).astype(np.float64))
    oxygen = flat_oxygen.reshape(n, steps)
    last = _carried(oxygen >= 0)
    out[:, :, -1] = np.where(
        last >= 0, np.take_along_axis(oxygen, np.maximum(last, 0), axis=1), 0.0
    )
    return out


def _first_baseline(
    baselines: Mapping[str, tuple[float, float] | None], codes: Sequence[str]
) -> tuple[float, float] | None:
    for code in codes:
        if found := baselines.get(code):
            return found
    return None


# -- from the serving window -------------------------------------------------------------
def window_glucose_input(window: PatientWindow, utc_offset_minutes: int = 0) -> np.ndarray | None:
    """The glucose model's input at the patient's latest CGM reading (None without one)."""
    if not window.cgm:
        return None
    out: np.ndarray = windows_glucose_inputs([window], [utc_offset_minutes])[0]
    return out


def windows_glucose_inputs(
    windows: Sequence[PatientWindow], utc_offset_minutes: Sequence[int]
) -> np.ndarray:
    """``window_glucose_input`` of many windows (each with a CGM reading), at once."""
    series = [w.cgm_series() for w in windows]
    return glucose_inputs(series, [s[-1][0] for s in series], utc_offset_minutes)


def window_vitals_input(window: PatientWindow) -> np.ndarray | None:
    """The deterioration model's input at the patient's latest vital sign (None without)."""
    if not any(window.vitals.values()):
        return None
    out: np.ndarray = windows_vitals_inputs([window])[0]
    return out


def windows_vitals_inputs(windows: Sequence[PatientWindow]) -> np.ndarray:
    """``window_vitals_input`` of many windows (each with a vital sign), at once."""
    latest = [max(s[-1][0] for s in w.vitals.values() if s) for w in windows]
    baselines = [{code: b.stats() for code, b in w.baselines.items()} for w in windows]
    return vitals_inputs([w.vitals for w in windows], baselines, latest)


# -- hashes ----------------------------------------------------------------------------
_FUNCTIONS = {
    GLUCOSE.name: (glucose_inputs, _flatten),
    VITALS.name: (vitals_inputs, _flatten, _hourly, _carried, _first_baseline),
}
_CONSTANTS: dict[str, object] = {
    GLUCOSE.name: {"center": GLUCOSE_CENTER, "clip": GLUCOSE_CLIP},
    VITALS.name: {
        "signals": [asdict(s) for s in VITAL_SIGNALS],
        "oxygen": OXYGEN_CODES,
        "deviation_clip": DEVIATION_CLIP,
    },
}


def _function_sources() -> dict[str, str]:
    """This module's top-level function sources, read once: the code as it was imported."""
    text = Path(__file__).read_text(encoding="utf-8")
    return {
        node.name: ast.get_source_segment(text, node) or ""
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef)
    }


_SOURCES = _function_sources()


def contract_hash(contract: Contract) -> str:
    """sha256 over the contract, its constants and its function's source."""
    digest = hashlib.sha256(
        json.dumps([contract.spec(), _CONSTANTS[contract.name]], sort_keys=True).encode()
    )
    for function in _FUNCTIONS[contract.name]:
        digest.update(_SOURCES[function.__name__].encode())
    return digest.hexdigest()


CONTRACTS = {c.name: c for c in (GLUCOSE, VITALS)}
