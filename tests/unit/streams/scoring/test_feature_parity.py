"""Parity of the batch feature builders with the functions the shipped models were trained
with: the reference functions below are the per-window code of the contract before the
builders worked on whole batches, verbatim. The batch builders must give the same arrays for
random windows (gaps, repeated slots, readings outside the window or after ``now``, two SpO2
codes, oxygen, baselines or none), one patient at a time and many at once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from streams.scoring import features as f
from streams.scoring.features import (
    DEVIATION_CLIP,
    GLUCOSE,
    GLUCOSE_CENTER,
    GLUCOSE_CLIP,
    MINUTE_MS,
    OXYGEN_CODES,
    VITAL_SIGNALS,
    VITALS,
)

NOW = 1_767_225_600_000 + 7 * 60 * MINUTE_MS


def reference_glucose_input(
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


def reference_vitals_input(
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


def random_cgm(rng: np.random.Generator) -> tuple[list[tuple[int, float]], int, int]:
    now = NOW + int(rng.integers(0, 86_400_000))
    count = int(rng.integers(0, 60))
    times = sorted(
        int(now - rng.integers(-10, 260) * 60_000 - rng.integers(0, 60_000)) for _ in range(count)
    )
    cgm = [(t, float(np.round(rng.uniform(30, 420), 2))) for t in times]
    offset = int(rng.choice([0, 60, -300, 480, 330, -720]))
    return cgm, now, offset


def random_vitals(
    rng: np.random.Generator,
) -> tuple[dict[str, list[tuple[int, float]]], dict[str, tuple[float, float] | None], int]:
    now = NOW + int(rng.integers(0, 86_400_000))
    codes = [c for s in VITAL_SIGNALS for c in s.codes] + list(OXYGEN_CODES)
    vitals: dict[str, list[tuple[int, float]]] = {}
    baselines: dict[str, tuple[float, float] | None] = {}
    for code in codes:
        if rng.random() < 0.4:
            continue
        count = int(rng.integers(1, 80))
        times = sorted(int(now - rng.integers(-60, 26 * 60) * 60_000) for _ in range(count))
        vitals[code] = [(t, float(np.round(rng.uniform(0, 160), 2))) for t in times]
        if rng.random() < 0.5:
            baselines[code] = (float(rng.uniform(10, 120)), float(rng.uniform(0, 9)))
        elif rng.random() < 0.5:
            baselines[code] = None
    return vitals, baselines, now


@pytest.mark.parametrize("seed", range(4))
def test_glucose_batches_equal_the_trained_per_window_function(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = [random_cgm(rng) for _ in range(300)]
    batch = f.glucose_inputs([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    for row, (cgm, now, offset) in zip(batch, cases, strict=True):
        expected = reference_glucose_input(cgm, now, offset)
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_array_equal(f.glucose_input(cgm, now, offset), expected)


@pytest.mark.parametrize("seed", range(4))
def test_vitals_batches_equal_the_trained_per_window_function(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    cases = [random_vitals(rng) for _ in range(300)]
    batch = f.vitals_inputs([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    for row, (vitals, baselines, now) in zip(batch, cases, strict=True):
        expected = reference_vitals_input(vitals, baselines, now)
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_array_equal(f.vitals_input(vitals, baselines, now), expected)


def test_an_empty_batch_has_no_rows() -> None:
    assert f.glucose_inputs([], [], []).shape == (0, GLUCOSE.steps, len(GLUCOSE.channels))
    assert f.vitals_inputs([], [], []).shape == (0, VITALS.steps, len(VITALS.channels))
