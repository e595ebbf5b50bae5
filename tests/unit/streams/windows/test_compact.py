"""The compact stored form: exact round trips for any buffer, and the size budget of a day."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.benchkit import monitored_day
from streams.processing import codec
from streams.windows import compact

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


def test_a_day_of_5_minute_monitoring_fits_in_2_kb() -> None:
    for seed in range(5):
        state = monitored_day(seed, WATERMARK)
        window = state.window
        assert sum(len(s) for s in window.vitals.values()) == 3 * 288
        assert state.personal  # the forecast's adaptation at 30 min, as served
        raw = codec.encode(state)
        assert len(raw) <= 2048, len(raw)
        again = codec.decode(raw)
        assert again.window.vitals == window.vitals and again.window.cgm == window.cgm
        assert again.personal == state.personal
