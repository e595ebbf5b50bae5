"""Real CGM (Shanghai T1DM/T2DM) through the serving window; event scoring at any rate.

The data tests read a few visits of ``$BEDSIDE_DATA_DIR`` (default ``../shared/data``) and
skip, saying so, where that folder is absent (it is never committed to the project).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import msgpack
import numpy as np
import pytest

from models.glucose import events, real, real_eval
from models.glucose.clinic import evaluate_file
from streams.scoring.personal import PersonalBias, personal_forecast, personal_summary

MIN = 60_000


@pytest.fixture(scope="module")
def visits() -> list[real.Visit]:
    try:
        return real.load_shanghai()
    except real.DataMissing as missing:
        pytest.skip(f"real CGM data absent: {missing}")


def test_visits_are_read_in_utc_with_the_patients_number(visits: list[real.Visit]) -> None:
    assert {v.population for v in visits} == {"T1D", "T2D"}
    first = next(v for v in visits if v.name == "1001_0_20210730")
    # the file's first reading: 2021-07-30 16:43 in China (UTC+08:00)
    assert first.times_ms[0] == 1627634580000 and first.mg_dl[0] == pytest.approx(113.4)
    assert first.patient == "T1D-1001"
    assert np.all(np.diff(first.times_ms) > 0)


def test_the_split_is_by_patient_stratified_and_stable(visits: list[real.Visit]) -> None:
    split = real.splits(visits)
    again = real.splits(list(reversed(visits)))
    assert split == again  # the order files are read in changes nothing
    for population in ("T1D", "T2D"):
        parts = [s for p, s in split.items() if p.startswith(population)]
        assert {"train", "validation", "test"} <= set(parts)
    several = [v.patient for v in visits if v.name.split("_")[1] != "0"]
    assert several  # patients with several visits exist, and each lies in one split
    assert all(split[p] == split[v.patient] for p in several for v in visits if v.patient == p)


def test_replay_targets_are_the_later_cgm_readings(visits: list[real.Visit]) -> None:
    visit = visits[0]
    r = real.replay([visit])
    assert len(r.now) > 0.9 * len(visit.times_ms) - 5  # every reading after the first hour
    i = len(r.now) // 2
    at = int(np.searchsorted(visit.times_ms, r.t_ms[i]))
    assert r.now[i] == pytest.approx(visit.mg_dl[at])
    assert r.future[i, 0] == pytest.approx(visit.mg_dl[at + 1])  # 15 min later
    assert r.future[i, 3] == pytest.approx(visit.mg_dl[at + 4])  # 60 min later
    # time of day in the patient's zone: 16:43 local, not 08:43 UTC
    x = r.x[0]
    minutes = np.degrees(np.arctan2(x[-1, 4], x[-1, 5])) % 360 * 4
    local = (r.t_ms[0] // MIN + real.CST_OFFSET_MIN) % 1440
    assert abs(minutes - local) <= 5


def test_rates_interpolated_and_thinned(visits: list[real.Visit]) -> None:
    visit = visits[0]
    dense, sparse = real.interpolate(visit), real.resample(visit, 30)
    assert events.interval_min(dense.times_ms / MIN) == 5
    assert events.interval_min(sparse.times_ms / MIN) == 30
    assert set(visit.times_ms.tolist()) <= set(dense.times_ms.tolist())


def series(values: list[float], every: float) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(values)) * every, np.array(values, float)


def test_an_event_lasts_15_minutes_at_any_rate() -> None:
    t5, v5 = series([100, 90, 65, 62, 60, 80, 100] + [100] * 12, 5)
    assert events.hypo_onsets(t5, v5) == [10.0]
    t5, v5 = series([100, 65, 62, 100] + [100] * 12, 5)
    assert events.hypo_onsets(t5, v5) == []  # 10 min below: no event
    t15, v15 = series([100, 65, 100, 100], 15)
    assert events.hypo_onsets(t15, v15) == [15.0]  # one 15-min reading stands for 15 min


def test_alarm_scoring_in_minutes() -> None:
    t, v = series([120, 110, 100, 90, 80, 66, 60, 64, 90, 120] + [120] * 40, 15)
    warned = events.score_visit(t, v, np.array([60.0]))  # 15 min before the onset at 75
    assert (warned.alarms, warned.true_alarms, warned.events, warned.detected) == (1, 1, 1, 1)
    assert warned.leads_min == [15.0]
    false = events.score_visit(t, v, np.array([300.0]))
    assert (false.alarms, false.true_alarms, false.detected) == (1, 0, 0)
    assert false.summary()["false_alarms_per_day"] == pytest.approx(1 / (735 / 1440), abs=1e-4)


def test_calibration_names_the_constant_rate_it_must_beat(visits: list[real.Visit]) -> None:
    r = real.replay(visits[:2])
    rate = float(r.hypo[r.hypo_known, 0].mean())
    perfect = real_eval.calibration(r.hypo[:, 0].astype(float), r, rate)
    assert perfect["brier"] == 0.0 and perfect["brier_constant"] > 0
    constant = real_eval.calibration(np.full(len(r.now), rate), r, rate)
    assert constant["brier"] == pytest.approx(constant["brier_constant"], abs=1e-5)


def test_the_served_forecast_follows_the_gate(visits: list[real.Visit]) -> None:
    r = real.replay(visits[:1])
    model = r.ar2 + 5
    served = real_eval.served_forecast(r, model, ["model", "ar2", "ar2", "model"])
    assert np.array_equal(served[:, 0], model[:, 0]) and np.array_equal(served[:, 1], r.ar2[:, 1])


def test_a_missing_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(real.DataMissing, match="BEDSIDE_DATA_DIR"):
        real.load_shanghai(tmp_path)


def test_the_personal_bias_learns_a_patients_constant_error() -> None:
    personal = PersonalBias()
    readings: list[tuple[int, float]] = []
    for i in range(200):  # a flat 120 mg/dL, forecast 10 too high at every horizon
        t = i * 15 * MIN
        readings.append((t, 120.0))
        personal.settle(readings[-6:])
        personal.remember(t, [130.0] * 4)
    assert all(n > 100 for n in personal.n)
    assert personal.correction() == pytest.approx([-10 * n / (n + 20) for n in personal.n])
    assert personal.adapt([130.0] * 4) == pytest.approx([120.0] * 4, abs=1.5)
    assert len(personal.pending) <= 13
    again = PersonalBias.from_list(personal.to_list())
    assert again.correction() == pytest.approx(personal.correction(), abs=0.01)
    # learned for another model or other horizons: starts afresh
    assert PersonalBias.from_list(personal.to_list(), "glucose@9.0.0").n == [0] * 4
    assert PersonalBias.from_list(personal.to_list(), "", (30,)).n == [0]


@pytest.mark.parametrize(
    "stored",
    [
        ["", [15, 30, 45, 60], [1, 2], [1, 2, 3, 4], []],  # too few biases
        ["", [15, 30, 45, 60], [0] * 4, [0] * 4, [[1, 2]]],  # a pending forecast cut short
        ["", [15, 30, 45, 60], ["x"] * 4, [0] * 4, []],  # not numbers
        ["", [15, 30, 45, 60]],  # cut short
        ["", None, 1, 2, 3],
        "not a list",
    ],
)
def test_a_stored_state_of_another_shape_starts_afresh(stored: object) -> None:
    """Whatever a window holds, adapting a forecast never raises: the state starts again."""
    adapted, correction, state = personal_forecast(
        stored,  # type: ignore[arg-type]
        lambda: [(0, 120.0)],
        60_000,
        dict.fromkeys(("15", "30", "45", "60"), 130.0),
        model="",
    )
    assert correction == dict.fromkeys(("15", "30", "45", "60"), 0.0)
    assert adapted == dict.fromkeys(("15", "30", "45", "60"), 130.0)
    assert PersonalBias.from_list(state).n == [0] * 4
    # and the window document shows nothing for it rather than failing
    if not (isinstance(stored, list) and len(stored) > 1 and isinstance(stored[1], list)):
        assert personal_summary(stored) is None  # type: ignore[arg-type]


def test_a_one_minute_sensor_still_learns_its_30_min_error() -> None:
    """Forecasts are remembered at most every 4.5 min, so 13 of them span an hour at any
    sensor rate (remembering every 1-min reading would drop each before its truth came)."""
    state: list = []
    readings: list[tuple[int, float]] = []
    for i in range(240):
        t = i * MIN
        readings.append((t, 120.0))
        _, correction, state = personal_forecast(
            state, lambda: readings[-70:], t, {"30": 130.0}, model="glucose@2.1.0"
        )
    learned = PersonalBias.from_list(state, "glucose@2.1.0", (30,))
    assert learned.n[0] > 35  # one forecast per 5 min came true after 30 min
    assert correction["30"] == pytest.approx(-10 * learned.n[0] / (learned.n[0] + 20), abs=0.1)
    assert len(learned.pending) <= 7 and len(msgpack.packb(state)) < 120


def test_a_clinic_file_of_the_test_patients_gives_the_reports_figures(
    visits: list[real.Visit], tmp_path: Path
) -> None:
    """``evaluate --cgm`` (ONNX, the served gate) on a tidy export of the T1D test patients
    matches ``models/reports/glucose_real.json`` (the shipped model) at their 15-min rate."""
    report_path = Path(__file__).resolve().parents[3] / "models/reports/glucose_real.json"
    report = json.loads(report_path.read_text())["test"]["T1D"]["15min"]
    split = real.splits(visits)
    mine = [v for v in visits if split[v.patient] == "test" and v.population == "T1D"]
    lines = ["id,time,gl"]
    for visit in mine:
        for t, value in zip(visit.times_ms.tolist(), visit.mg_dl.tolist(), strict=True):
            local = datetime.fromtimestamp(t / 1000, tz=real.CST).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{visit.name},{local},{value}")
    path = tmp_path / "t1d-test.csv"
    path.write_text("\n".join(lines) + "\n")
    figures = evaluate_file(path, "tidy", "Asia/Shanghai")
    assert figures["samples"] == report["samples"]
    for horizon, row in report["horizons"].items():
        for method in ("model", "served", "ar2", "last", "linear"):
            ours = figures["horizons"][horizon][method]
            assert ours["n"] == row[method]["n"], (horizon, method)
            if row[method]["rmse"] is not None:
                assert ours["rmse"] == pytest.approx(row[method]["rmse"], abs=0.011)
    for rule in ("predicted_low", "ar2", "cgm_below_80"):
        assert figures["alarms"][rule] == report["alarms"][rule], rule
    assert figures["calibration"]["brier"] == pytest.approx(
        report["calibration"]["brier"], abs=1e-4
    )


def test_the_blend_weight_minimises_the_mixed_error() -> None:
    from models.glucose.real_report import best_blend

    rng = np.random.default_rng(0)
    truth_noise = rng.normal(0, 1, 20_000)
    # two forecasts with independent errors of equal size: the best mix is half and half
    model, ar2 = truth_noise, rng.normal(0, 1, 20_000)
    half = best_blend(model, ar2)
    assert half["model_weight"] == 0.5 and half["rmse"] < half["model_rmse"]
    assert half["rmse"] == pytest.approx(np.sqrt(0.5), abs=0.02)
    # AR2 adds nothing to a model with a third of its error: the model alone
    alone = best_blend(model / 3, ar2)
    assert alone["model_weight"] >= 0.9 and alone["rmse"] <= alone["model_rmse"]
    assert best_blend(model, model * 0)["model_weight"] == 0.0  # AR2 exact: AR2 alone
