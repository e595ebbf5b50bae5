"""The shipped ONNX models in the pipeline: model scores, model-driven alerts, shadows."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from fakes import apply

from streams.processing import codec
from streams.processing.pipeline import PatientPipeline
from streams.rules import glucose as g
from streams.schemas.observation import Format, Kind, Observation, stable_event_id
from streams.scoring.families import ModelRequest, inputs_of
from streams.scoring.manifest import Calibration, Gate
from streams.scoring.service import ModelScoring
from streams.settings import ScoringSettings, StreamSettings

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def observation(kind: Kind, code: str, minutes: float, value: float) -> Observation:
    at = T0 + timedelta(minutes=minutes)
    return Observation(
        patient_id="syn-p1",
        kind=kind,
        code=code,
        value=value,
        unit="x",
        effective_at=at,
        received_at=at,
        source="t",
        event_id=stable_event_id("syn-p1", code, at, value, "t"),
        format=Format.NATIVE,
    )


def cgm_series(values: list[float]) -> list[Observation]:
    return [observation(Kind.GLUCOSE, "99504-3", 5 * i, v) for i, v in enumerate(values)]


def vitals_set(hours: float, hr: float, rr: float, spo2: float, sbp: float, temp: float):
    m = hours * 60
    return [
        observation(Kind.VITAL, "8867-4", m, hr),
        observation(Kind.VITAL, "9279-1", m, rr),
        observation(Kind.VITAL, "59408-5", m, spo2),
        observation(Kind.VITAL, "8480-6", m, sbp),
        observation(Kind.VITAL, "8310-5", m, temp),
        observation(Kind.VITAL, "67775-7", m, 0),
        observation(Kind.VITAL, "3151-8", m, 0),
    ]


class OneAtATime:
    """What the batched scoring does, one window at a time."""

    async def score(self, requests: list[ModelRequest]) -> list[list[np.ndarray] | None]:
        for request in requests:
            inputs_of([request])
        return [[o[0] for o in r.model.run(r.x[None])] for r in requests]  # type: ignore[index]


class Unscored:
    """A model call that failed for every window."""

    async def score(self, requests: list[ModelRequest]) -> list[list[np.ndarray] | None]:
        return [None] * len(requests)


@pytest.fixture(scope="module")
def scoring() -> ModelScoring:
    # both families: the deterioration model is opt-in (NEWS2 serves its alarms by default)
    return ModelScoring(ScoringSettings(provider="cpu", models=["glucose", "deterioration"]))


def test_by_default_only_the_glucose_model_scores() -> None:
    """No deterioration model has beaten NEWS2 on real patients (models/reports/
    deterioration_hourly.md): by default none scores, and NEWS2 raises those alarms."""
    default = ModelScoring(ScoringSettings(provider="cpu"))
    assert set(default.store.describe()) == {"glucose"}
    pipeline = PatientPipeline(StreamSettings(), models=default.serving_models())
    assert [m.family.name for m in pipeline.models] == ["glucose"]
    stable = [o for h in range(0, 24, 4) for o in vitals_set(h, 78, 15, 97, 126, 36.8)]
    worsening = stable + [
        o
        for i, h in enumerate(range(24, 34, 2))
        for o in vitals_set(h, 95 + 8 * i, 20 + 2 * i, 94 - i, 110 - 6 * i, 37.8 + 0.3 * i)
    ]
    scores, alerts = finished(pipeline, worsening)
    assert "deterioration_model" not in scores and scores["news2"]["value"] >= 7
    kinds = {a["kind"] for a in alerts}
    assert "news2_high" in kinds and "deterioration" not in kinds


def finished(pipeline: PatientPipeline, observations: list[Observation]) -> tuple[dict, list]:
    _, output = apply(pipeline, "syn-p1", None, observations, scorer=OneAtATime())
    risk = orjson.loads(output.risk or b"{}")
    return {s["name"]: s for s in risk["scores"]}, [orjson.loads(a) for a in output.alerts]


def test_the_shipped_models_load_with_their_manifests(scoring: ModelScoring) -> None:
    described = scoring.store.describe()
    assert set(described) == {"glucose", "deterioration"}
    assert described["glucose"]["primary"] == "glucose@2.3.0"
    assert described["glucose"]["provider"] == "CPUExecutionProvider"


def test_a_falling_glucose_raises_a_model_driven_predicted_low(scoring: ModelScoring) -> None:
    pipeline = PatientPipeline(StreamSettings(), models=scoring.serving_models())
    falling = [180 - 6 * i for i in range(18)]  # 180 -> 78 mg/dL over 85 min
    scores, alerts = finished(pipeline, cgm_series(falling))
    model = scores["glucose_model"]
    assert model["version"] == "glucose@2.3.0"
    assert model["value"] >= model["threshold"]
    assert float(model["forecast_mg_dl"]["30"]) < 78
    (alert,) = [a for a in alerts if a["kind"] == "predicted_low"]
    assert alert["rule_or_model_version"] == "glucose@2.3.0"
    assert "likely to fall below 70 mg/dL within 30 min" in alert["reason"]
    drivers = alert["evidence"]["drivers"]  # occlusion: what drove the risk
    assert drivers and drivers[0]["contribution"] > 0
    assert f"Driven by: {drivers[0]['signal']}" in alert["reason"]
    assert alert["evidence"]["recent_cgm"][-1]["mg_dl"] == 78
    assert "glucose" in scores  # the rules (AR2 among them) are still published


def test_a_steady_glucose_does_not_alert(scoring: ModelScoring) -> None:
    pipeline = PatientPipeline(StreamSettings(), models=scoring.serving_models())
    scores, alerts = finished(pipeline, cgm_series([120.0] * 24))
    assert scores["glucose_model"]["value"] < scores["glucose_model"]["threshold"]
    assert alerts == []


def test_a_shadow_model_is_published_but_never_alerts(scoring: ModelScoring) -> None:
    shadows = [replace(m, role="shadow") for m in scoring.serving_models()]
    pipeline = PatientPipeline(StreamSettings(), models=shadows)
    falling = [180 - 6 * i for i in range(18)]
    scores, alerts = finished(pipeline, cgm_series(falling))
    assert "glucose_model_shadow" in scores and "glucose_model" not in scores
    # without a primary model AR2 drives predicted_low, as before models existed
    versions = {a["rule_or_model_version"] for a in alerts if a["kind"] == "predicted_low"}
    assert versions <= {"glucose-rules-1"}


def gated(
    scoring: ModelScoring,
    forecast: dict[str, str],
    predicted_low: str,
    threshold: float = 0.40,
    **more: object,
) -> list:
    """The shipped models with the glucose model's gate (and alarm threshold) replaced."""
    gate = Gate(forecast=forecast, predicted_low=predicted_low, validated_on="test", **more)  # type: ignore[arg-type]
    update = {"gate": gate, "thresholds": {"p_low_30": threshold}}
    return [
        replace(m, manifest=m.manifest.model_copy(update=update))
        if m.family.name == "glucose"
        else m
        for m in scoring.serving_models()
    ]


def test_the_gate_serves_ar2_where_the_model_lost(scoring: ModelScoring) -> None:
    models = gated(scoring, {"15": "model", "30": "ar2", "45": "model", "60": "ar2"}, "model")
    pipeline = PatientPipeline(StreamSettings(), models=models)
    falling = [180 - 6 * i for i in range(18)]
    scores, _ = finished(pipeline, cgm_series(falling))
    model = scores["glucose_model"]
    assert model["forecast_served_by"] == {"15": "model", "30": "ar2", "45": "model", "60": "ar2"}
    # AR2 from the last two readings (78 after 84), as the rules compute it
    ar2 = g.ar2_forecast_ms([(0, 84.0), (300_000, 78.0)], steps=12)
    assert ar2 is not None
    assert model["forecast_mg_dl"]["30"] == round(ar2[5][1], 1)
    assert model["forecast_mg_dl"]["15"] == model["model_forecast_mg_dl"]["15"]
    assert model["predicted_low_by"] == "model"


def test_a_model_whose_alarm_lost_leaves_predicted_low_to_ar2(scoring: ModelScoring) -> None:
    models = gated(scoring, dict.fromkeys(("15", "30", "45", "60"), "model"), "ar2")
    assert not [m for m in models if m.family.name == "glucose" and m.drives_alarm]
    pipeline = PatientPipeline(StreamSettings(), models=models)
    falling = [176 - 6 * i for i in range(18)]  # ... 80, 74: AR2 crosses 70 in 5 min
    scores, alerts = finished(pipeline, cgm_series(falling))
    assert scores["glucose_model"]["predicted_low_by"] == "ar2"
    versions = {a["rule_or_model_version"] for a in alerts if a["kind"] == "predicted_low"}
    assert versions == {"glucose-rules-1"}  # AR2 alarms; the model's probability does not


EVERYWHERE = dict.fromkeys(("15", "30", "45", "60"), "model")


def test_the_falling_rule_keeps_predicted_low_quiet_while_the_cgm_rises(
    scoring: ModelScoring,
) -> None:
    """A high probability alone alarms under the ``probability`` rule; under
    ``probability_falling`` only while the 15-min rate the model reads is below 0."""
    # hovering just above 70 and edging up (70 -> 72 in 15 min): P(< 70) is high anyway
    hovering = [71.0, 70, 70, 69, 70, 71, 70, 70, 71, 72]
    falling = [180 - 6 * i for i in range(18)]
    for rule, series, alarms in (
        ("probability", hovering, True),
        ("probability_falling", hovering, False),
        ("probability_falling", falling, True),
    ):
        models = gated(scoring, EVERYWHERE, "model", predicted_low_rule=rule)
        pipeline = PatientPipeline(StreamSettings(), models=models)
        scores, alerts = finished(pipeline, cgm_series(series))
        model = scores["glucose_model"]
        assert model["predicted_low_rule"] == rule
        fired = [a for a in alerts if a["kind"] == "predicted_low"]
        assert bool(fired) is alarms, (rule, model)
        if series is hovering:
            assert model["trend_mg_dl_min"] > 0
            assert model["value"] >= model["threshold"]  # the probability alone alarms
        # what drove the risk is computed only where the alarm opens
        assert ("drivers" in model) is alarms
        if fired and rule == "probability_falling":
            assert "while falling" in fired[0]["reason"]
            assert fired[0]["evidence"]["trend_mg_dl_min"] < 0


def test_an_any_of_gate_also_warns_below_its_cgm_level_and_says_which_half_held(
    scoring: ModelScoring,
) -> None:
    """With ``predicted_low_cgm_below`` (validation chose "model or CGM < 75"), a CGM that
    hovers at 72-74 and rises (the falling rule keeps the model quiet) still warns, in words
    that name the level; without it, it does not; a patient whose own low is 80 is warned at
    85."""
    hovering = [73.0, 72, 73, 74, 73, 74, 73, 74, 74, 74]
    for below, low, alarms in ((75.0, 70.0, True), (None, 70.0, False), (75.0, 80.0, True)):
        models = gated(scoring, EVERYWHERE, "model", predicted_low_rule="probability_falling",
                       predicted_low_cgm_below=below)  # fmt: skip
        settings = StreamSettings(glucose_targets={"syn-p1": {"low": low}}) if low != 70 else None
        pipeline = PatientPipeline(settings or StreamSettings(), models=models)
        values = [v + (low - 70) for v in hovering]
        scores, alerts = finished(pipeline, cgm_series(values))
        assert scores["glucose_model"]["predicted_low_cgm_below"] == below
        fired = [a for a in alerts if a["kind"] == "predicted_low"]
        assert bool(fired) is alarms, (below, low)
        if fired:
            assert f"early-warning level {75 + low - 70:.0f} mg/dL" in fired[0]["reason"]
            assert fired[0]["evidence"]["early_warning_mg_dl"] == 75 + low - 70


def test_personal_adaptation_learns_the_patients_offset_and_stays_in_the_window(
    scoring: ModelScoring,
) -> None:
    """Where the gate's ``personal`` says (here 30 min), the served forecast is the model's
    plus the patient's own shrunk mean error so far; its state lives in the stored patient state."""
    models = gated(scoring, EVERYWHERE, "model", personal=["30"])
    pipeline = PatientPipeline(StreamSettings(), models=models)
    values = [100 + 60 * math.sin(i / 6) for i in range(40)]  # 40 readings: errors <= 50
    readings = cgm_series(values)
    state, raw, corrections = None, [], []
    for reading in readings:
        state, output = apply(pipeline, "syn-p1", state, [reading], scorer=OneAtATime())
        model = next(s for s in orjson.loads(output.risk)["scores"] if s["name"] == "glucose_model")
        raw.append(model["model_forecast_mg_dl"]["30"])
        corrections.append(model["personal_correction_mg_dl"]["30"])
        assert model["forecast_mg_dl"]["30"] == pytest.approx(raw[-1] + corrections[-1], abs=0.11)
        assert list(model["personal_correction_mg_dl"]) == ["30"]  # where the gate says
        assert model["forecast_served_by"]["30"] == "model+personal"
        assert model["forecast_served_by"]["60"] == "model"
        assert model["forecast_mg_dl"]["60"] == model["model_forecast_mg_dl"]["60"]
    assert corrections[:6] == [0.0] * 6  # nothing learned before a 30-min forecast came true
    # then: the mean 30-min error so far, shrunk by n / (n + 20)
    errors = [values[i + 6] - raw[i] for i in range(len(values) - 6)]
    expected = sum(errors) / len(errors) * len(errors) / (len(errors) + 20)
    assert abs(expected) > 1.0
    assert corrections[-1] == pytest.approx(expected, abs=0.2)
    assert state is not None
    again = codec.decode(codec.encode(state))
    assert again.personal == state.personal
    model, horizons, _, counts, _ = again.personal
    assert (model, horizons, counts) == ("glucose@2.3.0", [30], [len(errors)])
    # a gate that leaves it off: no state stored at all
    plain = PatientPipeline(StreamSettings(), models=gated(scoring, EVERYWHERE, "model"))
    state, _ = apply(plain, "syn-p1", None, cgm_series(values[:20]), scorer=OneAtATime())
    assert state.personal == []
    assert b"personal" not in codec.encode(state)


def test_deterioration_model_alerts_with_the_vitals_that_drove_it(scoring: ModelScoring) -> None:
    pipeline = PatientPipeline(StreamSettings(), models=scoring.serving_models())
    stable = [o for h in range(0, 24, 4) for o in vitals_set(h, 78, 15, 97, 126, 36.8)]
    scores, alerts = finished(pipeline, stable)
    assert scores["deterioration_model"]["value"] < scores["deterioration_model"]["threshold"]
    assert not [a for a in alerts if a["kind"] == "deterioration"]
    worsening = stable + [
        o
        for i, h in enumerate(range(24, 34, 2))
        for o in vitals_set(h, 95 + 8 * i, 20 + 2 * i, 94 - i, 110 - 6 * i, 37.8 + 0.3 * i)
    ]
    scores, alerts = finished(pipeline, worsening)
    model = scores["deterioration_model"]
    assert model["value"] >= model["threshold"]
    (alert,) = [a for a in alerts if a["kind"] == "deterioration"]
    assert alert["severity"] == "urgent" and alert["rule_or_model_version"] == "deterioration@1.0.0"
    assert "heart rate 127/min" in alert["reason"]
    signals = [d["signal"] for d in alert["evidence"]["drivers"]]
    assert signals and set(signals) <= {
        "heart rate",
        "respiratory rate",
        "SpO2",
        "systolic BP",
        "temperature",
        "consciousness",
        "supplemental oxygen",
    }


def test_a_failed_model_call_still_publishes_the_rules(scoring: ModelScoring) -> None:
    pipeline = PatientPipeline(StreamSettings(), models=scoring.serving_models())
    _, output = apply(pipeline, "syn-p1", None, cgm_series([120.0] * 6), scorer=Unscored())
    names = [s["name"] for s in orjson.loads(output.risk or b"{}")["scores"]]
    assert names == ["glucose"]


def test_a_calibrated_gate_serves_the_calibrated_probability_against_its_threshold(
    scoring: ModelScoring,
) -> None:
    """The score's value, ``p_low_30`` and the alarm decision use the gate's calibration map;
    the raw probability travels beside it. A map that halves the probability keeps a
    window below a threshold its raw probability would reach."""
    falling = [180 - 6 * i for i in range(18)]
    plain = PatientPipeline(StreamSettings(), models=gated(scoring, EVERYWHERE, "model"))
    scores, alerts = finished(plain, cgm_series(falling))
    raw = scores["glucose_model"]["p_low_30"]
    assert raw > 0.5  # the raw probability alone alarms at a 0.4 threshold
    assert [
        a
        for a in alerts
        if a["kind"] == "predicted_low" and "glucose@" in a["rule_or_model_version"]
    ]
    halve = Calibration(raw=[0.0, 1.0], calibrated=[0.0, 0.5], samples=10)
    models = gated(
        scoring, EVERYWHERE, "model", threshold=raw / 2 + 0.05,
        calibration={"p_low_30": halve, "p_urgent_low_30": halve},
    )  # fmt: skip
    scores, alerts = finished(PatientPipeline(StreamSettings(), models=models), cgm_series(falling))
    model = scores["glucose_model"]
    assert model["value"] == model["p_low_30"] == pytest.approx(raw / 2, abs=1e-4)
    assert model["p_low_30_uncalibrated"] == pytest.approx(raw, abs=1e-4)
    assert model["p_urgent_low_30"] <= 0.5
    assert not [
        a
        for a in alerts
        if a["kind"] == "predicted_low" and "glucose@" in a["rule_or_model_version"]
    ]


def test_a_calibration_map_must_be_monotone_probabilities() -> None:
    fitted = Calibration(raw=[0.1, 0.5, 0.9], calibrated=[0.0, 0.2, 0.8], samples=100)
    assert fitted.apply(0.3) == pytest.approx(0.1)
    assert fitted.apply(0.0) == 0.0 and fitted.apply(1.0) == 0.8  # flat beyond the ends
    assert list(fitted.apply(np.array([0.1, 0.7]))) == pytest.approx([0.0, 0.5])
    for raw, calibrated in (([0.5, 0.1], [0.0, 0.1]), ([0.1, 0.5], [0.3, 0.2]), ([0.1], [1.2])):
        with pytest.raises(ValueError, match="increase|decrease|within"):
            Calibration(raw=raw, calibrated=calibrated, samples=1)
