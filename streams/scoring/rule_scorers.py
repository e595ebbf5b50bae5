"""Rule-based scorers: NEWS2 over the latest vitals, glucose level/trend/AR2 over CGM."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..rules import glucose as g
from ..rules.news2 import VERSION as NEWS2_VERSION
from ..rules.news2 import Vitals, news2_score
from ..schemas.observation import Kind, Observation
from ..timefmt import iso
from ..windows.patient import CGM_CODE, PatientWindow
from .base import PatientProfile, Score

RESPIRATORY_RATE, SPO2_CODES, O2_FLOW, FIO2 = "9279-1", ("2708-6", "59408-5"), "3151-8", "3150-0"
SYSTOLIC, PULSE, CONSCIOUSNESS, TEMPERATURE = "8480-6", "8867-4", "67775-7", "8310-5"
GLUCOSE_RULES_VERSION = "glucose-rules-1"
AR2_STEPS = 6  # 30 min: the predictive-low horizon


class News2Scorer:
    """NEWS2 from each parameter's latest value no older than ``max_age_ms``."""

    name = "news2"

    def reacts_to(self, observation: Observation) -> bool:
        return observation.kind is Kind.VITAL

    def __init__(self, max_age_ms: int = 4 * 3_600_000) -> None:
        self.max_age_ms = max_age_ms

    def score(self, window: PatientWindow, profile: PatientProfile) -> Score | None:
        vitals = window.vitals
        if not vitals:
            return None
        oldest = window.watermark - self.max_age_ms

        def latest(code: str) -> tuple[int, float] | None:
            samples = vitals.get(code)
            return samples[-1] if samples and samples[-1][0] >= oldest else None

        spo2_samples = [s for c in SPO2_CODES if (s := latest(c)) is not None]
        values = [
            None if (s := latest(code)) is None else s[1]
            for code in (
                RESPIRATORY_RATE,
                O2_FLOW,
                FIO2,
                SYSTOLIC,
                PULSE,
                CONSCIOUSNESS,
                TEMPERATURE,
            )
        ]
        total, details = _news2(
            profile.spo2_scale, max(spo2_samples)[1] if spo2_samples else None, *values
        )
        return Score(self.name, NEWS2_VERSION, total, dict(details))


@lru_cache(maxsize=1 << 14)
def _news2(
    spo2_scale: int,
    spo2: float | None,
    respiratory_rate: float | None,
    flow: float | None,
    fio2: float | None,
    systolic: float | None,
    pulse: float | None,
    consciousness: float | None,
    temperature: float | None,
) -> tuple[float, dict[str, Any]]:
    """NEWS2 total and details of one set of latest values (a pure function: cached, since
    a patient's latest vitals repeat across evaluations; callers copy the details)."""
    on_oxygen = (
        None if flow is None and fio2 is None else bool((flow or 0) > 0 or (fio2 or 21) > 21)
    )
    vitals = Vitals(
        respiratory_rate=respiratory_rate,
        spo2=spo2,
        on_oxygen=on_oxygen,
        systolic_bp=systolic,
        pulse=pulse,
        consciousness=None if consciousness is None else int(consciousness),
        temperature=temperature,
    )
    result = news2_score(vitals, spo2_scale=spo2_scale)
    return float(result.total), {
        "band": result.band.value,
        "single_parameter_3": result.single_parameter_3,
        "parameters": result.parameters,
        "missing": list(result.missing),
        "spo2_scale": result.spo2_scale,
        "inputs": {k: getattr(vitals, k) for k in Vitals.__slots__},
    }


class GlucoseScorer:
    """Latest CGM value, its level against the patient's targets, trend and AR2 forecast."""

    name = "glucose"

    def reacts_to(self, observation: Observation) -> bool:
        return observation.code == CGM_CODE

    def score(self, window: PatientWindow, profile: PatientProfile) -> Score | None:
        # rate of change looks back 15 min, AR2 at two readings: the last 20 min suffice
        recent = window.recent_cgm(20 * 60_000)
        if not recent:
            return None
        latest = recent[-1][1]
        forecast = g.ar2_forecast_ms(recent, steps=AR2_STEPS) or []
        # g.ar2_predicted_low over the same 30 min, without forecasting twice
        predicted = next((t for t, v in forecast if v < profile.glucose.low), None)
        rate = g.rate_of_change_ms(recent)
        return Score(
            self.name,
            GLUCOSE_RULES_VERSION,
            latest,
            {
                "level": g.glucose_level(latest, profile.glucose).value,
                "rate_mg_dl_per_min": None if rate is None else round(rate, 3),
                "ar2_version": g.AR2_VERSION,
                "ar2_30min_min_mg_dl": round(min(v for _, v in forecast), 1) if forecast else None,
                "predicted_low_at": iso(int(predicted)) if predicted is not None else None,
                "recent": [{"at": iso(t), "mg_dl": v} for t, v in recent[-3:]],
            },
        )


def default_scorers(news2_max_age_ms: int) -> list[News2Scorer | GlucoseScorer]:
    return [News2Scorer(news2_max_age_ms), GlucoseScorer()]
