"""The compact stored form: exact round trips for any buffer, and the size budget of a day."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.schemas.observation import Kind
from streams.windows import compact
from streams.windows.patient import PatientWindow

WATERMARK = 1_767_225_600_000
DAY_S = 86_400


@st.composite
def buffers(draw: st.DrawFn) -> list[tuple[int, float]]:
    """Sorted whole-second times up to a day back, values of at most two decimals, some
    extreme (what apply_value keeps)."""
    offsets = sorted(set(draw(st.lists(st.integers(0, 3 * DAY_S), max_size=300))), reverse=True)
    value = st.one_of(
        st.floats(-1000, 1000, allow_nan=False).map(lambda v: round(v, 2)),
        st.integers(-(10**9), 10**9).map(float),
        st.sampled_from([0.0, -0.0, 1e16, -3.5e20, float("inf"), float("-inf"), 0.01]),
    )
    return [(WATERMARK - o * 1000, draw(value)) for o in offsets]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(buffers())
def test_every_buffer_comes_back_exactly(samples: list[tuple[int, float]]) -> None:
    packed = compact.pack_samples(WATERMARK, samples)
    back = compact.unpack_samples(WATERMARK, packed)
    assert back == samples
    assert [type(t) for t, _ in back] == [int] * len(samples)


def test_each_length_takes_its_form() -> None:
    short = [(WATERMARK - 60_000, 72.0)]
    day = [(WATERMARK - k * 300_000, 70.0 + k % 5) for k in range(288)][::-1]
    odd = [*day[:-1], (WATERMARK, float("nan"))]
    assert compact.pack_samples(WATERMARK, short)[0] == "l"
    packed = compact.pack_samples(WATERMARK, day)
    assert packed[0] == "d" and packed[3] == "h" and packed[5] == "h"  # 300 s, 100 hundredths
    assert compact.pack_samples(WATERMARK, odd)[0] == "r"
    back = compact.unpack_samples(WATERMARK, compact.pack_samples(WATERMARK, odd))
    assert back[:-1] == odd[:-1] and back[-1][1] != back[-1][1]  # NaN stays NaN


def test_a_baselines_hours_come_back_exactly() -> None:
    hours = {491_000 + h: (7_200 * (h + 3), 12) for h in range(72)}
    assert compact.unpack_hours(compact.pack_hours(hours)) == hours
    assert compact.unpack_hours(compact.pack_hours({})) == {}


def day_of_monitoring(seed: int) -> PatientWindow:
    """24 h of 5-minute CGM, heart rate, SpO2 and respiratory rate, varying as real signals
    do (random walks, CGM to the unit, vitals to the unit or a tenth)."""
    rnd = random.Random(seed)
    window = PatientWindow("bench-01234")
    hr, spo2, rr, glucose = 72.0, 97.0, 16.0, 120.0
    for k in range(288):
        t = WATERMARK - DAY_S * 1000 + k * 300_000 + rnd.randint(0, 20) * 1000
        hr = min(180.0, max(40.0, hr + rnd.choice((-3, -1, 0, 0, 1, 3))))
        spo2 = min(100.0, max(85.0, spo2 + rnd.choice((-1, 0, 0, 0, 1))))
        rr = min(30.0, max(8.0, round(rr + rnd.uniform(-1, 1), 1)))
        glucose = min(400.0, max(40.0, glucose + rnd.uniform(-8, 8)))
        for code, kind, value in (
            ("99504-3", Kind.GLUCOSE, round(glucose)),
            ("8867-4", Kind.VITAL, hr),
            ("59408-5", Kind.VITAL, spo2),
            ("9279-1", Kind.VITAL, rr),
        ):
            window.apply_value(
                code, kind, t, value, allowed_lateness_ms=7_200_000, max_vital_samples=288
            )
    return window


def test_a_day_of_5_minute_monitoring_fits_in_2_kb() -> None:
    for seed in range(5):
        window = day_of_monitoring(seed)
        assert sum(len(s) for s in window.vitals.values()) == 3 * 288
        raw = window.to_bytes()
        assert len(raw) <= 2048, len(raw)
        again = PatientWindow.from_bytes(raw)
        assert again.vitals == window.vitals and again.cgm == window.cgm
