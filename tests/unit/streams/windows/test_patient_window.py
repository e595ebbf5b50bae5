"""PatientWindow: event-time order, duplicates, lateness, bounds, compact round trip (the
window stored as part of a patient's state: ``streams.processing.codec``)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from factories import T0, observation

from streams.processing import codec
from streams.processing.state import PatientState
from streams.schemas.observation import Kind, Observation
from streams.windows.baseline import Baseline
from streams.windows.patient import CGM_SLOTS, Applied, PatientWindow

LATENESS = 2 * 3_600_000


def obs(
    code: str, minutes: float, value: float, kind: Kind = Kind.VITAL, patient: str = "syn-w1"
) -> Observation:
    unit = "mg/dL" if kind is Kind.GLUCOSE else "/min"
    return observation(patient, kind, code, minutes, value, unit=unit)


def apply_all(observations: list[Observation], max_vital_samples: int = 288) -> PatientWindow:
    window = PatientWindow("syn-w1")
    for o in observations:
        window.apply(o, allowed_lateness_ms=LATENESS, max_vital_samples=max_vital_samples)
    return window


def stream(n: int = 60) -> list[Observation]:
    rng = random.Random(3)
    events = []
    for i in range(n):
        events.append(obs("99504-3", 5 * i, 120 + rng.uniform(-30, 30), Kind.GLUCOSE))
        events.append(obs("8867-4", 5 * i + 1, 70 + rng.uniform(-10, 10)))
        if i % 12 == 0:
            events.append(obs("4548-4", 5 * i, 7.0 + i / 100, Kind.LAB))
    return events


def stored(window: PatientWindow) -> bytes:
    state = PatientState.new(window.patient_id)
    state.window = window
    return codec.encode(state)


def loaded(raw: bytes) -> PatientWindow:
    return codec.decode(raw).window


def comparable(window: PatientWindow) -> dict[str, object]:
    return {
        "cgm": window.cgm_series(),
        "vitals": window.vitals,
        "labs": window.labs,
        "watermark": window.watermark,
        "events": window.events,
        "baselines": window.baselines,
    }


def test_out_of_order_and_duplicates_end_as_if_in_order() -> None:
    ordered = stream()
    shuffled = ordered + ordered[::7]  # duplicates
    rng = random.Random(11)
    # shuffle only within 90 minutes of each other (inside the 2 h lateness)
    shuffled.sort(key=lambda o: o.effective_at.timestamp() + rng.uniform(0, 90 * 60))
    in_order, messy = apply_all(ordered), apply_all(shuffled)
    assert comparable(messy) == comparable(in_order)
    assert messy.duplicates == len(ordered[::7]) and in_order.duplicates == 0


def test_late_events_are_counted_not_inserted() -> None:
    window = apply_all([obs("8867-4", 200, 80)])
    result = window.apply(
        obs("8867-4", 60, 90), allowed_lateness_ms=LATENESS, max_vital_samples=288
    )
    assert result is Applied.LATE and window.late == 1
    assert window.vitals["8867-4"] == [
        (int((T0 + timedelta(minutes=200)).timestamp()) * 1000, 80.0)
    ]


def test_lateness_is_per_signal_not_across_topics() -> None:
    # a backlog where the vitals topic runs 3 h ahead of the glucose topic (a burst): the
    # glucose readings are in order for their own signal and must not be classed late
    window = apply_all([obs("8867-4", 180 + i, 80) for i in range(0, 60, 5)])
    outcomes = [
        window.apply(
            obs("99504-3", i, 100 + i, Kind.GLUCOSE),
            allowed_lateness_ms=LATENESS,
            max_vital_samples=288,
        )
        for i in range(0, 60, 5)
    ]
    assert set(outcomes) == {Applied.INSERTED} and window.late == 0
    assert len(window.cgm_series()) == 12
    # ... and a glucose reading 2 h behind the newest glucose reading still is
    late = window.apply(
        obs("99504-3", -70, 90, Kind.GLUCOSE), allowed_lateness_ms=LATENESS, max_vital_samples=288
    )
    assert late is Applied.LATE


def test_a_signal_further_behind_than_the_lateness_is_pruned() -> None:
    window = apply_all([obs("99504-3", i, 100, Kind.GLUCOSE) for i in range(0, 30, 5)])
    window.apply(obs("8867-4", 10 * 60, 80), allowed_lateness_ms=LATENESS, max_vital_samples=288)
    assert not window.cgm_series()  # 4 h of CGM + 2 h lateness behind the patient's clock


def test_the_whole_accepted_time_range_round_trips() -> None:
    # event times from 2000 to now + 5 min (the decoders' bounds) in one window
    first = observation("syn-w1", Kind.LAB, "4548-4", 0, 6.5, t0=T0.replace(year=2000))
    window = apply_all([first, obs("8867-4", 0, 70)])
    again = loaded(stored(window))
    assert again.labs == window.labs and again.vitals == window.vitals


def test_cgm_grid_keeps_four_hours_and_the_latest_reading_per_slot() -> None:
    readings = [obs("99504-3", i, 100 + i, Kind.GLUCOSE) for i in range(0, 6 * 60)]
    window = apply_all(readings)
    series = window.cgm_series()
    assert len(series) == CGM_SLOTS
    assert [v for _, v in series][-1] == 100 + 6 * 60 - 1  # minute 359 wins slot 355-359
    assert series[1][0] - series[0][0] == 5 * 60_000


def test_vital_buffers_are_bounded_by_count_and_24_hours() -> None:
    window = apply_all([obs("8867-4", i, 70) for i in range(0, 30 * 60, 5)], max_vital_samples=100)
    assert len(window.vitals["8867-4"]) == 100
    window = apply_all([obs("8867-4", i, 70) for i in range(0, 30 * 60, 30)])
    times = [t for t, _ in window.vitals["8867-4"]]
    assert times[-1] - times[0] <= 24 * 3_600_000


def test_round_trip_is_exact_and_compact() -> None:
    window = apply_all(stream(288))
    raw = stored(window)
    again = loaded(raw)
    assert comparable(again) == comparable(window)
    assert stored(again) == raw
    assert len(raw) < 6000, len(raw)


def test_baseline_needs_six_hours_and_ignores_an_abnormal_hour() -> None:
    baseline = Baseline()
    for hour in range(5):
        baseline.add(hour * 3_600_000, 70)
    assert baseline.deviation(100) is None
    for hour in range(5, 24):
        baseline.add(hour * 3_600_000, 70 + (hour % 3))
    baseline.add(24 * 3_600_000, 160)  # one tachycardic hour
    center, _spread = baseline.stats() or (0, 0)
    assert 70 <= center <= 72
    assert (baseline.deviation(120) or 0) > 5


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        codec.decode(b"\x93\x09\xa1x\x00")
