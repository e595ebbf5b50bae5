"""Live alarm quality: predictions judged by later CGM, low events warned or missed."""

from __future__ import annotations

import factories
from fakes import apply

from streams.alerts.quality import QualityStats, on_cgm, quality_line
from streams.processing.pipeline import PatientPipeline
from streams.schemas.observation import Observation
from streams.settings import StreamSettings

MIN = 60_000


def test_a_prediction_followed_by_a_low_is_a_hit_with_its_lead() -> None:
    predictions, recent = [0], []
    judgements, low = on_cgm(predictions, recent, False, 20 * MIN, 65)
    assert low and [j["outcome"] for j in judgements] == ["hit", "warned"]
    assert judgements[0]["lead_min"] == 20 and judgements[1]["lead_min"] == 20
    assert predictions == []


def test_a_prediction_without_a_low_in_30_minutes_is_false() -> None:
    predictions: list[int] = [0]
    assert on_cgm(predictions, [], False, 25 * MIN, 80)[0] == []  # not yet known
    judgements, _ = on_cgm(predictions, [], False, 35 * MIN, 90)
    assert [j["outcome"] for j in judgements] == ["false"] and predictions == []


def test_an_unwarned_low_is_missed_and_counted_once() -> None:
    judgements, low = on_cgm([], [], False, 0, 60)
    assert [j["outcome"] for j in judgements] == ["missed"]
    assert on_cgm([], [], low, 5 * MIN, 58)[0] == []  # the same event


def test_figures_and_lines() -> None:
    stats = QualityStats(cgm_readings=288)
    for outcome in ("hit", "hit", "false"):
        stats.add({"outcome": outcome})
    stats.add({"outcome": "warned", "lead_min": 20.0})
    stats.add({"outcome": "missed"})
    figures = stats.figures()
    assert figures["precision"] == 2 / 3 and figures["recall"] == 0.5
    assert figures["false_per_patient_day"] == 1.0 and figures["median_lead_min"] == 20.0
    line = quality_line(
        "p 1",
        "predicted_low",
        {"judged": "prediction", "outcome": "hit", "at": 1000, "lead_min": 15.0},
    )
    assert line == (
        "alarm_quality,patient_id=p\\ 1,kind=predicted_low,judged=prediction "
        'outcome="hit",lead_min=15.0 1000'
    )


def test_the_pipeline_judges_its_own_predictive_alarms() -> None:

    def cgm(i: int, value: float) -> Observation:
        return factories.cgm(5 * i, value, patient="p")

    pipeline, state, judged = PatientPipeline(StreamSettings()), None, []
    for i, value in enumerate([140, 125, 108, 92, 80, 71, 66, 62]):
        state, output = apply(pipeline, "p", state, [cgm(i, value)])
        judged += output.quality
    outcomes = [j["outcome"] for j in judged]
    assert "hit" in outcomes and "warned" in outcomes  # AR2 saw it coming
