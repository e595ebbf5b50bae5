"""What each model family reads from a window and how its outputs become a ``Score``.

Model scores are named ``glucose_model`` and ``deterioration_model`` (a shadow model's get a
``_shadow`` suffix: published on the risk topic, never alerting). The primary glucose model
drives the ``predicted_low`` alert in place of AR2 where its manifest's gate says its alarm
won on validation, and its forecast is served per horizon only where it beat AR2's (the
score says which served); the deterioration model drives ``deterioration``. Thresholds come
from each model's manifest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..rules import glucose as g
from ..schemas.observation import Kind, Observation
from ..timefmt import iso
from ..windows.patient import CGM_CODE, PatientWindow
from .base import PatientProfile, Score
from .features import glucose_trend, windows_glucose_inputs, windows_vitals_inputs
from .manifest import Manifest, PredictedLowRule
from .personal import SETTLE_MS, personal_forecast

DEFAULT_LOW = 70.0  # mg/dL: the low target a gate's levels were validated at

Role = Literal["primary", "shadow"]
SHADOW = "_shadow"  # a shadow model's score name suffix
HORIZONS_MIN = (15, 30, 45, 60)


@dataclass(frozen=True)
class ModelFamily:
    name: str
    score_name: str
    alert_kind: str
    threshold_name: str
    reacts_to: Callable[[Observation], bool]
    ready: Callable[[PatientWindow], bool]  # the window holds what the model reads
    # the inputs of many ready windows at once: (N, steps, channels)
    inputs: Callable[[Sequence[PatientWindow], Sequence[PatientProfile]], np.ndarray]
    # (outputs, manifest, window, score name, the input the outputs came from, the patient's
    # adaptation in stored form): the score, with the new adaptation when it changed
    to_score: Callable[
        [list[np.ndarray], Manifest, PatientWindow, str, np.ndarray | None, list[Any]], Score
    ]
    alarm_holds: Callable[[Score, PatientProfile], bool]  # the model's alarm kind holds

    def input(self, window: PatientWindow, profile: PatientProfile) -> np.ndarray | None:
        """One window's input (None when it is not ready)."""
        if not self.ready(window):
            return None
        row: np.ndarray = self.inputs([window], [profile])[0]
        return row


def _glucose_offset(window: PatientWindow, profile: PatientProfile) -> int:
    """Time of day in the patient's own zone: ``tz`` in the patient settings, else the
    offset the newest CGM reading was written in (FHIR, native, Nightscout ``utcOffset``),
    else UTC."""
    if profile.utc_offset is not None:
        return profile.utc_offset_minutes(window.cgm[max(window.cgm)][0])
    return window.utc_offset_min or 0


def _glucose_inputs(
    windows: Sequence[PatientWindow], profiles: Sequence[PatientProfile]
) -> np.ndarray:
    offsets = [_glucose_offset(w, p) for w, p in zip(windows, profiles, strict=True)]
    return windows_glucose_inputs(windows, offsets)


def served_forecast(
    model: dict[str, float], window: PatientWindow, manifest: Manifest
) -> tuple[dict[str, float], dict[str, str]]:
    """The forecast served per horizon (the model's only where its gate says it won) and
    which one served it."""
    gate = manifest.gate
    if gate is None or all(gate.forecast.get(h) == "model" for h in model):
        return model, dict.fromkeys(model, "model")  # no AR2 to compute (the hot path)
    ar2 = g.ar2_forecast_ms(window.recent_cgm(20 * 60_000), steps=max(HORIZONS_MIN) // 5)
    served, by = {}, {}
    for horizon, value in model.items():
        source = gate.forecast.get(horizon, "ar2")
        if source == "ar2" and ar2 is not None:
            served[horizon], by[horizon] = round(ar2[int(horizon) // 5 - 1][1], 1), "ar2"
        elif source == "ar2":  # AR2 cannot run (one reading): the last value, as AR2 would
            served[horizon], by[horizon] = window.cgm_series()[-1][1], "last_value"
        else:
            served[horizon], by[horizon] = value, "model"
    return served, by


# the glucose model's probability outputs, in order: P(< 70) and P(< 54) within 30 min
GLUCOSE_PROBABILITIES = ("p_low_30", "p_urgent_low_30")


def predicted_low_fires(
    p_low: np.ndarray | float,
    current: np.ndarray | float,
    trend: np.ndarray | float,
    *,
    threshold: float,
    rule: PredictedLowRule,
    low: float = 70.0,
) -> np.ndarray | bool:
    """Whether the model's ``predicted_low`` holds (element-wise for arrays): the CGM is not
    yet low, P(< 70 within 30 min) reached the threshold and, under the
    ``probability_falling`` rule, the CGM is falling (the 15-min rate the model reads is
    below 0). Serving (one score: plain floats, no arrays built on the hot path) and
    evaluation (arrays) both call this."""
    fires = (current >= low) & (p_low >= threshold)
    if rule == "probability_falling":
        fires = fires & (trend < 0)
    return fires


def glucose_alarm_holds(score: Score, profile: PatientProfile) -> bool:
    """Whether the glucose model's ``predicted_low`` holds for this score (its details
    carry the threshold, the rule, the current CGM and its trend)."""
    d = score.details
    threshold, current = d.get("threshold"), d.get("current_mg_dl")
    rule, trend = d.get("predicted_low_rule", "probability"), d.get("trend_mg_dl_min")
    if score.value is None or threshold is None or current is None:
        return False
    low = profile.glucose.low
    # the trend unknown, the falling rule cannot hold (the threshold half still can)
    fires = not (trend is None and rule == "probability_falling") and bool(
        predicted_low_fires(
            score.value, current, trend or 0.0, threshold=threshold, rule=rule, low=low
        )
    )
    return fires or below_early_warning(d, current, low)


def below_early_warning(details: dict[str, Any], current: float, low: float) -> bool:
    """Whether the CGM is under the gate's early-warning level (``predicted_low_cgm_below``,
    moved by the patient's own low target): the threshold half of an any-of policy."""
    level = details.get("predicted_low_cgm_below")
    return level is not None and current < level + (low - DEFAULT_LOW)


def deterioration_alarm_holds(score: Score, profile: PatientProfile | None = None) -> bool:
    """Whether the deterioration model's alarm holds: its probability reached the threshold
    (the same for every patient: ``profile`` is not read)."""
    threshold = score.details.get("threshold")
    return score.value is not None and threshold is not None and score.value >= threshold


def predicted_low_rule(manifest: Manifest) -> PredictedLowRule:
    return manifest.gate.predicted_low_rule if manifest.gate else "probability"


def _glucose_score(
    outputs: list[np.ndarray],
    manifest: Manifest,
    window: PatientWindow,
    name: str,
    x: np.ndarray | None,
    adaptation: list[Any],
) -> Score:
    forecast, raw = outputs
    gate = manifest.gate
    # as validation calibrated them (the threshold is on that scale); raw without a map
    p_low = round(float(gate.calibrate("p_low_30", raw[0]) if gate else raw[0]), 4)
    p_urgent = round(float(gate.calibrate("p_urgent_low_30", raw[1]) if gate else raw[1]), 4)
    series = window.cgm_series()
    t, current = series[-1]
    model = {str(h): round(float(v), 1) for h, v in zip(HORIZONS_MIN, forecast, strict=True)}
    personal: dict[str, float] = {}
    adapted, adaptation_after = model, None
    if gate and gate.personal and not name.endswith(SHADOW):
        # the primary model's forecast adapted to this patient (its state: ``adaptation``)
        values, personal, adaptation_after = personal_forecast(
            adaptation,
            functools.partial(window.recent_cgm, SETTLE_MS),
            t,
            {h: model[h] for h in gate.personal if h in model},
            model=f"{manifest.name}@{manifest.version}",
        )
        adapted = model | values
    served, served_by = served_forecast(adapted, window, manifest)
    served_by.update({h: "model+personal" for h in personal if served_by[h] == "model"})
    return Score(
        name,
        f"{manifest.name}@{manifest.version}",
        p_low,
        {
            "p_low_30": p_low,
            "p_urgent_low_30": p_urgent,
            **(
                {"p_low_30_uncalibrated": round(float(raw[0]), 4)}
                if gate and gate.calibration
                else {}
            ),
            "forecast_mg_dl": served,
            "forecast_served_by": served_by,
            "model_forecast_mg_dl": model,
            **({"personal_correction_mg_dl": personal} if personal else {}),
            "predicted_low_by": "model" if drives_predicted_low(manifest) else "ar2",
            "predicted_low_rule": predicted_low_rule(manifest),
            "predicted_low_cgm_below": manifest.gate.predicted_low_cgm_below
            if manifest.gate
            else None,
            "trend_mg_dl_min": None if x is None else round(float(glucose_trend(x)), 2),
            "threshold": manifest.thresholds.get("p_low_30"),
            "at": iso(t),
            "current_mg_dl": current,
            "recent": [{"at": iso(at), "mg_dl": v} for at, v in series[-3:]],
        },
        adaptation_after,
    )


def _deterioration_score(
    outputs: list[np.ndarray],
    manifest: Manifest,
    window: PatientWindow,
    name: str,
    x: np.ndarray | None,
    adaptation: list[Any],
) -> Score:
    latest = {
        code: {"at": iso(samples[-1][0]), "value": samples[-1][1]}
        for code, samples in window.vitals.items()
        if samples
    }
    return Score(
        name,
        f"{manifest.name}@{manifest.version}",
        round(float(outputs[0][0]), 4),
        {
            "threshold": manifest.thresholds.get("p_deterioration"),
            "horizon_h": manifest.training_data.get("horizon_hours"),
            "latest": latest,
        },
    )


def drives_predicted_low(manifest: Manifest) -> bool:
    return manifest.gate is None or manifest.gate.predicted_low == "model"


@dataclass(frozen=True)
class ServingModel:
    """A loaded model as the pipeline sees it: what it reads, its manifest and its run."""

    family: ModelFamily
    role: Role
    manifest: Manifest
    run: Callable[[np.ndarray], list[np.ndarray]]

    @property
    def key(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    @property
    def drives_alarm(self) -> bool:
        """Whether this model's alarm kind comes from it (a primary model whose gate lets it:
        a glucose model whose alarm lost to AR2's on validation leaves predicted_low to AR2)."""
        if self.role != "primary":
            return False
        return self.family.name != "glucose" or drives_predicted_low(self.manifest)

    @property
    def score_name(self) -> str:
        suffix = SHADOW if self.role == "shadow" else ""
        return self.family.score_name + suffix


@dataclass(eq=False)  # a request is itself: results are looked up by it
class ModelRequest:
    """A ready window to score with ``model``; its input ``x`` is built for all of a batch's
    requests to the model at once (:func:`inputs_of`) unless given."""

    model: ServingModel
    window: PatientWindow
    profile: PatientProfile
    x: np.ndarray | None = None


def inputs_of(requests: Sequence[ModelRequest]) -> np.ndarray:
    """The inputs of requests to one model as one array (N, steps, channels), built for all
    of them at once; each request's ``x`` becomes its row."""
    if all(r.x is not None for r in requests):
        return np.stack([r.x for r in requests])  # type: ignore[misc]  # all given
    family = requests[0].model.family
    x = family.inputs([r.window for r in requests], [r.profile for r in requests])
    for request, row in zip(requests, x, strict=True):
        request.x = row
    return x


FAMILIES = {
    "glucose": ModelFamily(
        "glucose",
        "glucose_model",
        "predicted_low",
        "p_low_30",
        lambda o: o.code == CGM_CODE,
        lambda window: bool(window.cgm),
        _glucose_inputs,
        _glucose_score,
        glucose_alarm_holds,
    ),
    "deterioration": ModelFamily(
        "deterioration",
        "deterioration_model",
        "deterioration",
        "p_deterioration",
        lambda o: o.kind is Kind.VITAL,
        lambda window: any(window.vitals.values()),
        lambda windows, _: windows_vitals_inputs(windows),
        _deterioration_score,
        deterioration_alarm_holds,
    ),
}
