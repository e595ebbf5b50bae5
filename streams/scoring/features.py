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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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


def glucose_input(
    cgm: Sequence[tuple[int, float]], now_ms: int, utc_offset_minutes: int = 0
) -> np.ndarray:
    """CGM readings up to ``now_ms`` as the glucose model's (36, 6) input."""
    slot_ms = GLUCOSE.step_minutes * MINUTE_MS
    steps = GLUCOSE.steps
    first_slot = now_ms // slot_ms - steps + 1
    values = np.full(steps, np.nan)
    for t, v in cgm:
        index = t // slot_ms - first_slot
        if 0 <= index < steps:
            values[index] = v  # oldest first: a slot keeps its latest reading
    out = np.zeros((steps, len(GLUCOSE.channels)), dtype=np.float32)
    observed = ~np.isnan(values)
    minutes = (first_slot + np.arange(steps)) * GLUCOSE.step_minutes + utc_offset_minutes
    angle = 2 * math.pi * (minutes % 1440) / 1440
    out[:, 4], out[:, 5] = np.sin(angle), np.cos(angle)
    if not observed.any():
        out[:, 2] = 1.0
        return out
    indices = np.where(observed, np.arange(steps), -1)
    last = np.maximum.accumulate(indices)  # index of the latest reading at or before a step
    first = int(np.argmax(observed))
    filled = values[np.where(last >= 0, last, first)]  # carried forward; back-filled at start
    mg_dl = np.clip(filled, *GLUCOSE_CLIP)
    out[:, 0] = np.log(mg_dl / GLUCOSE_CENTER)
    out[:, 1] = observed
    since = np.where(last >= 0, np.arange(steps) - last, steps) * GLUCOSE.step_minutes / 60
    out[:, 2] = np.minimum(since, 1.0)
    rate = np.zeros(steps)
    rate[3:] = (mg_dl[3:] - mg_dl[:-3]) / 15.0
    rate[: first + 3] = 0.0  # no slope across the back-filled start
    out[:, 3] = rate / 2.0
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
    bin_ms = VITALS.step_minutes * MINUTE_MS
    steps = VITALS.steps
    first_bin = now_ms // bin_ms - steps + 1
    out = np.zeros((steps, len(VITALS.channels)), dtype=np.float32)
    for s_index, signal in enumerate(VITAL_SIGNALS):
        sums, counts = np.zeros(steps), np.zeros(steps)
        baseline = None
        for code in signal.codes:
            for t, v in vitals.get(code, ()):
                index = t // bin_ms - first_bin
                if 0 <= index < steps and t <= now_ms:
                    sums[index] += v
                    counts[index] += 1
            baseline = baseline or baselines.get(code)
        observed = counts > 0
        column = 3 * s_index
        if not observed.any():
            continue
        means = np.where(observed, sums / np.maximum(counts, 1), np.nan)
        last = np.maximum.accumulate(np.where(observed, np.arange(steps), -1))
        filled = np.where(last >= 0, means[np.maximum(last, 0)], signal.center)
        out[:, column] = (filled - signal.center) / signal.scale
        out[:, column + 1] = observed
        if baseline is not None:
            center, spread = baseline
            z = (filled - center) / max(spread, 1e-6 + abs(center) * 0.01)
            out[:, column + 2] = np.where(last >= 0, np.clip(z, -DEVIATION_CLIP, DEVIATION_CLIP), 0)
            out[:, column + 2] /= 3.0
    oxygen = np.full(steps, np.nan)
    for code in OXYGEN_CODES:
        room_air = 0.0 if code == "3151-8" else 21.0
        for t, v in vitals.get(code, ()):
            index = t // bin_ms - first_bin
            if 0 <= index < steps and t <= now_ms:
                on = 1.0 if v > room_air else 0.0
                oxygen[index] = on if np.isnan(oxygen[index]) else max(oxygen[index], on)
    last = np.maximum.accumulate(np.where(~np.isnan(oxygen), np.arange(steps), -1))
    out[:, -1] = np.where(last >= 0, oxygen[np.maximum(last, 0)], 0.0)
    return out


# -- from the serving window -------------------------------------------------------------
def window_glucose_input(window: PatientWindow, utc_offset_minutes: int = 0) -> np.ndarray | None:
    """The glucose model's input at the patient's latest CGM reading (None without one)."""
    cgm = window.cgm_series()
    if not cgm:
        return None
    return glucose_input(cgm, cgm[-1][0], utc_offset_minutes)


def window_vitals_input(window: PatientWindow) -> np.ndarray | None:
    """The deterioration model's input at the patient's latest vital sign (None without)."""
    latest = max((samples[-1][0] for samples in window.vitals.values() if samples), default=None)
    if latest is None:
        return None
    baselines = {code: b.stats() for code, b in window.baselines.items()}
    return vitals_input(window.vitals, baselines, latest)


# -- hashes ----------------------------------------------------------------------------
_FUNCTIONS = {GLUCOSE.name: (glucose_input,), VITALS.name: (vitals_input,)}
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
