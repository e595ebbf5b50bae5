"""Glucose thresholds, rate of change, Nightscout AR2 and stale data."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from streams.rules.glucose import (
    GlucoseLevel,
    GlucoseTargets,
    Reading,
    ar2_forecast,
    ar2_predicted_low,
    glucose_level,
    rate_of_change,
    staleness,
)

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _series(*values: float, step_min: float = 5) -> list[Reading]:
    return [Reading(T0 + timedelta(minutes=i * step_min), v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (53.9, GlucoseLevel.URGENT_LOW),
        (54, GlucoseLevel.LOW),
        (69.9, GlucoseLevel.LOW),
        (70, GlucoseLevel.IN_RANGE),
        (180, GlucoseLevel.IN_RANGE),
        (180.1, GlucoseLevel.HIGH),
        (250, GlucoseLevel.HIGH),
        (251, GlucoseLevel.URGENT_HIGH),
    ],
)
def test_default_thresholds(value: float, level: GlucoseLevel) -> None:
    assert glucose_level(value) is level


def test_per_patient_targets() -> None:
    targets = GlucoseTargets(urgent_low=60, low=80, high=160, urgent_high=220)
    assert glucose_level(75, targets) is GlucoseLevel.LOW
    with pytest.raises(ValueError, match="targets"):
        GlucoseTargets(low=50)


def test_rate_of_change_over_the_last_15_minutes() -> None:
    readings = _series(200, 150, 140, 130, 120)  # older 200 falls outside the window
    assert rate_of_change(readings) == pytest.approx(-2.0)
    assert rate_of_change(_series(100, 101)) is None  # 5 min span: too short to trust
    assert rate_of_change([]) is None


def test_ar2_matches_the_recurrence() -> None:
    readings = _series(110, 100)
    forecast = ar2_forecast(readings, steps=2)
    assert forecast is not None
    y0, y1 = math.log(110 / 140), math.log(100 / 140)
    y2 = -0.723 * y0 + 1.716 * y1
    y3 = -0.723 * y1 + 1.716 * y2
    assert [p.mg_dl for p in forecast] == pytest.approx([140 * math.exp(y2), 140 * math.exp(y3)])
    assert forecast[0].at == readings[-1].at + timedelta(minutes=5)


def test_ar2_flat_start_after_a_gap_and_sensor_codes() -> None:
    # 10 min apart: Nightscout starts flat from the latest reading, ignoring the 200
    forecast = ar2_forecast(_series(200, 100, step_min=10), steps=2)
    y = math.log(100 / 140)
    y2 = (-0.723 + 1.716) * y
    y3 = -0.723 * y + 1.716 * y2
    assert forecast is not None
    assert [p.mg_dl for p in forecast] == pytest.approx([140 * math.exp(y2), 140 * math.exp(y3)])
    assert ar2_forecast(_series(39, 100)) is None
    assert ar2_forecast(_series(100)) is None


def test_ar2_predicted_low() -> None:
    falling = _series(100, 88)
    low = ar2_predicted_low(falling, threshold=70, horizon=timedelta(minutes=30))
    assert low is not None and low.mg_dl < 70
    assert low.at <= falling[-1].at + timedelta(minutes=30)
    assert ar2_predicted_low(_series(120, 121)) is None


def test_stale_data() -> None:
    assert staleness(T0, T0 + timedelta(minutes=14)) is None
    assert staleness(T0, T0 + timedelta(minutes=15)) == 15
    assert staleness(T0, T0 + timedelta(minutes=45)) == 30
    assert staleness(None, T0) == 30
