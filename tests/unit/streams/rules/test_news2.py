"""NEWS2 against the RCP 2017 chart, band by band and edge by edge."""

import pytest

from streams.rules.news2 import (
    Band,
    Vitals,
    consciousness_score,
    news2_score,
    pulse_score,
    respiratory_rate_score,
    spo2_scale1_score,
    spo2_scale2_score,
    systolic_bp_score,
    temperature_score,
)


@pytest.mark.parametrize(
    ("rate", "score"),
    [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (20.5, 2), (8.4, 3)],
)
def test_respiration_rate(rate: float, score: int) -> None:
    assert respiratory_rate_score(rate) == score


@pytest.mark.parametrize(
    ("spo2", "score"), [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
def test_spo2_scale_1(spo2: float, score: int) -> None:
    assert spo2_scale1_score(spo2) == score


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "score"),
    [
        (83, False, 3),
        (84, False, 2),
        (85, True, 2),
        (86, False, 1),
        (87, True, 1),
        (88, True, 0),
        (92, True, 0),
        (93, False, 0),
        (99, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
    ],
)
def test_spo2_scale_2(spo2: float, on_oxygen: bool, score: int) -> None:
    assert spo2_scale2_score(spo2, on_oxygen) == score


@pytest.mark.parametrize(
    ("sbp", "score"), [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
)
def test_systolic(sbp: float, score: int) -> None:
    assert systolic_bp_score(sbp) == score


@pytest.mark.parametrize(
    ("pulse", "score"),
    [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
)
def test_pulse(pulse: float, score: int) -> None:
    assert pulse_score(pulse) == score


@pytest.mark.parametrize(
    ("temp", "score"),
    [
        (35.0, 3),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
        (36.05, 0),
        (35.04, 3),
    ],
)
def test_temperature(temp: float, score: int) -> None:
    assert temperature_score(temp) == score


@pytest.mark.parametrize(("level", "score"), [(0, 0), (1, 3), (2, 3), (3, 3), (4, 3)])
def test_consciousness_acvpu(level: int, score: int) -> None:
    assert consciousness_score(level) == score


NORMAL = Vitals(
    respiratory_rate=16,
    spo2=97,
    on_oxygen=False,
    systolic_bp=125,
    pulse=72,
    consciousness=0,
    temperature=36.8,
)


def test_normal_observations_score_zero() -> None:
    result = news2_score(NORMAL)
    assert (result.total, result.band, result.single_parameter_3, result.complete) == (
        0,
        Band.ZERO,
        False,
        True,
    )


def test_single_parameter_three_flag_in_the_low_band() -> None:
    result = news2_score(_with(consciousness=2))
    assert (result.total, result.band, result.single_parameter_3) == (3, Band.LOW, True)


def _with(**changes: object) -> Vitals:
    values = {name: getattr(NORMAL, name) for name in NORMAL.__slots__}
    values.update(changes)
    return Vitals(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "total", "band"),
    [
        ({"respiratory_rate": 22, "pulse": 95}, 3, Band.LOW),  # 2 + 1
        ({"respiratory_rate": 22, "spo2": 94, "on_oxygen": True}, 5, Band.MEDIUM),  # 2 + 1 + 2
        ({"respiratory_rate": 22, "spo2": 93, "on_oxygen": True, "pulse": 95}, 7, Band.HIGH),
        (
            {
                "respiratory_rate": 26,
                "spo2": 90,
                "on_oxygen": True,
                "systolic_bp": 88,
                "pulse": 135,
                "consciousness": 4,
                "temperature": 39.5,
            },
            19,
            Band.HIGH,
        ),  # 3+3+2+3+3+3+2
        (
            {
                "respiratory_rate": 26,
                "spo2": 90,
                "on_oxygen": True,
                "systolic_bp": 88,
                "pulse": 135,
                "consciousness": 4,
                "temperature": 34.9,
            },
            20,
            Band.HIGH,
        ),  # the maximum
    ],
)
def test_aggregate_bands(changes: dict[str, object], total: int, band: Band) -> None:
    result = news2_score(_with(**changes))
    assert (result.total, result.band) == (total, band)


def test_scale_2_for_hypercapnic_patients() -> None:
    on_o2 = _with(spo2=90, on_oxygen=True)
    assert news2_score(on_o2).parameters["spo2"] == 3
    assert news2_score(on_o2, spo2_scale=2).parameters["spo2"] == 0
    with pytest.raises(ValueError, match="scale"):
        news2_score(on_o2, spo2_scale=3)


def test_missing_parameters_are_reported_not_guessed() -> None:
    result = news2_score(Vitals(pulse=135, temperature=37.0))
    assert result.total == 3 and not result.complete
    assert set(result.missing) == {
        "respiratory_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
    }
