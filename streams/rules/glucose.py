"""Glucose rules: thresholds, rate of change, Nightscout's AR2 forecast, stale data.

AR2 follows Nightscout's ``ar2`` forecast (lib/plugins/ar2.js): on y = ln(BG / 140) with
5-minute steps, y[t+1] = -0.723 * y[t-1] + 1.716 * y[t], started from the two latest readings
when they are under 5.1 min apart (else from the latest twice: a flat start), both above
39 mg/dL; forecasts are clamped to 36-400 mg/dL. Nightscout alarms on a loss statistic of
that forecast; Bedside's baseline predictive-low rule alarms when the forecast crosses the
low threshold within the horizon (:func:`ar2_predicted_low`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

AR2_VERSION = "ar2-nightscout"
AR2_COEFFICIENTS = (-0.723, 1.716)
AR2_REFERENCE = 140.0
AR2_STEP = timedelta(minutes=5)
AR2_CLAMP = (36.0, 400.0)
AR2_MIN_INPUT = 39.0  # Nightscout: readings at or below 39 are sensor codes, not glucose
AR2_MAX_PAIR_GAP = timedelta(minutes=5.1)
MILLISECOND = timedelta(milliseconds=1)
MINUTE_MS = 60_000
AR2_STEP_MS = AR2_STEP / MILLISECOND
AR2_MAX_PAIR_GAP_MS = AR2_MAX_PAIR_GAP / MILLISECOND


class GlucoseLevel(StrEnum):
    URGENT_LOW = "urgent_low"
    LOW = "low"
    IN_RANGE = "in_range"
    HIGH = "high"
    URGENT_HIGH = "urgent_high"


@dataclass(frozen=True, slots=True)
class GlucoseTargets:
    """Per-patient thresholds in mg/dL (defaults: international consensus on CGM targets)."""

    urgent_low: float = 54.0
    low: float = 70.0
    high: float = 180.0
    urgent_high: float = 250.0

    def __post_init__(self) -> None:
        if not 0 < self.urgent_low < self.low < self.high < self.urgent_high:
            msg = "glucose targets must satisfy 0 < urgent_low < low < high < urgent_high"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Reading:
    at: datetime
    mg_dl: float


def glucose_level(mg_dl: float, targets: GlucoseTargets = GlucoseTargets()) -> GlucoseLevel:
    """Below ``urgent_low`` / ``low`` or above ``high`` / ``urgent_high`` (strict)."""
    if mg_dl < targets.urgent_low:
        return GlucoseLevel.URGENT_LOW
    if mg_dl < targets.low:
        return GlucoseLevel.LOW
    if mg_dl > targets.urgent_high:
        return GlucoseLevel.URGENT_HIGH
    if mg_dl > targets.high:
        return GlucoseLevel.HIGH
    return GlucoseLevel.IN_RANGE


def _ms(at: datetime) -> float:
    return at.timestamp() * 1000


def rate_of_change(
    readings: Sequence[Reading],
    *,
    window: timedelta = timedelta(minutes=15),
    min_span: timedelta = timedelta(minutes=10),
) -> float | None:
    """Least-squares slope in mg/dL/min over the readings of the last ``window``.

    None when the readings in the window span less than ``min_span`` (too few to trust).
    """
    return rate_of_change_ms(
        [(_ms(r.at), r.mg_dl) for r in readings],
        window_ms=window / MILLISECOND,
        min_span_ms=min_span / MILLISECOND,
    )


def rate_of_change_ms(
    points: Sequence[tuple[float, float]],
    *,
    window_ms: float = 15 * MINUTE_MS,
    min_span_ms: float = 10 * MINUTE_MS,
) -> float | None:
    """:func:`rate_of_change` on (time in ms, mg/dL) points: the stream's hot path."""
    if not points:
        return None
    end = points[-1][0]
    recent = [(t, v) for t, v in points if end - t <= window_ms]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < min_span_ms:
        return None
    xs = [(t - end) / MINUTE_MS for t, _ in recent]
    ys = [v for _, v in recent]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


def ar2_forecast(readings: Sequence[Reading], steps: int = 6) -> list[Reading] | None:
    """Nightscout's AR2 forecast, ``steps`` x 5 min ahead; None without a usable pair."""
    forecast = ar2_forecast_ms([(_ms(r.at), r.mg_dl) for r in readings[-2:]], steps)
    if forecast is None:
        return None
    at = readings[-1].at
    return [Reading(at + step * AR2_STEP, v) for step, (_, v) in enumerate(forecast, 1)]


def ar2_forecast_ms(
    points: Sequence[tuple[float, float]], steps: int = 6
) -> list[tuple[float, float]] | None:
    """:func:`ar2_forecast` on (time in ms, mg/dL) points: the stream's hot path."""
    if len(points) < 2:
        return None
    (t_prev, previous), (t_curr, current) = points[-2], points[-1]
    if min(previous, current) <= AR2_MIN_INPUT:
        return None
    y_curr = math.log(current / AR2_REFERENCE)
    y_prev = math.log(previous / AR2_REFERENCE) if t_curr - t_prev < AR2_MAX_PAIR_GAP_MS else y_curr
    forecast = []
    a, b = AR2_COEFFICIENTS
    low, high = AR2_CLAMP
    for step in range(1, steps + 1):
        y_prev, y_curr = y_curr, a * y_prev + b * y_curr
        value = min(max(AR2_REFERENCE * math.exp(y_curr), low), high)
        forecast.append((t_curr + step * AR2_STEP_MS, value))
    return forecast


def ar2_predicted_low(
    readings: Sequence[Reading],
    *,
    threshold: float = 70.0,
    horizon: timedelta = timedelta(minutes=30),
) -> Reading | None:
    """The first AR2 forecast point below ``threshold`` within ``horizon``, if any."""
    steps = int(horizon / AR2_STEP)
    forecast = ar2_forecast(readings, steps)
    if forecast is None:
        return None
    return next((point for point in forecast if point.mg_dl < threshold), None)


def stale_minutes(last_reading: datetime | None, now: datetime) -> float | None:
    """Minutes since the last CGM reading (None if there never was one)."""
    if last_reading is None:
        return None
    return max((now - last_reading).total_seconds() / 60, 0.0)


def staleness(
    last_reading: datetime | None, now: datetime, thresholds: tuple[int, ...] = (15, 30)
) -> int | None:
    """The largest stale threshold (minutes) passed, e.g. 15 or 30; None if fresh."""
    minutes = stale_minutes(last_reading, now)
    if minutes is None:
        return max(thresholds)
    passed = [t for t in thresholds if minutes >= t]
    return max(passed) if passed else None
