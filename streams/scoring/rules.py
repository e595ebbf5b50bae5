"""Rule-based scorers: NEWS2 over the latest vitals, glucose level/trend/AR2 over CGM."""

from __future__ import annotations

from datetime import UTC, datetime

from ..rules import glucose as g
from ..rules.news2 import Vitals, news2_score
from ..schemas.observation import Kind, Observation
from ..windows.patient import CGM_CODE, PatientWindow
from .base import PatientProfile, Score

RESPIRATORY_RATE, SPO2_CODES, O2_FLOW, FIO2 = "9279-1", ("2708-6", "59408-5"), "3151-8", "3150-0"
SYSTOLIC, PULSE, CONSCIOUSNESS, TEMPERATURE = "8480-6", "8867-4", "67775-7", "8310-5"
GLUCOSE_RULES_VERSION = "glucose-rules-1"


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class News2Scorer:
    """NEWS2 from each parameter's latest value no older than ``max_age_ms``."""

    name = "news2"

    def reacts_to(self, observation: Observation) -> bool:
        return observation.kind is Kind.VITAL

    def __init__(self, max_age_ms: int = 4 * 3_600_000) -> None:
        self.max_age_ms = max_age_ms

    def score(self, window: PatientWindow, profile: PatientProfile) -> Score | None:
        if not window.vitals:
            return None
        now = window.watermark

        def latest(code: str) -> float | None:
            sample = window.latest_vital(code, max_age_ms=self.max_age_ms, now=now)
            return None if sample is None else sample[1]

        spo2_samples = [
            s
            for c in SPO2_CODES
            if (s := window.latest_vital(c, max_age_ms=self.max_age_ms, now=now)) is not None
        ]
        flow, fio2 = latest(O2_FLOW), latest(FIO2)
        on_oxygen = (
            None if flow is None and fio2 is None else bool((flow or 0) > 0 or (fio2 or 21) > 21)
        )
        consciousness = latest(CONSCIOUSNESS)
        vitals = Vitals(
            respiratory_rate=latest(RESPIRATORY_RATE),
            spo2=max(spo2_samples)[1] if spo2_samples else None,
            on_oxygen=on_oxygen,
            systolic_bp=latest(SYSTOLIC),
            pulse=latest(PULSE),
            consciousness=None if consciousness is None else int(consciousness),
            temperature=latest(TEMPERATURE),
        )
        result = news2_score(vitals, spo2_scale=profile.spo2_scale)
        return Score(
            self.name,
            result.version,
            float(result.total),
            {
                "band": result.band.value,
                "single_parameter_3": result.single_parameter_3,
                "parameters": result.parameters,
                "missing": list(result.missing),
                "spo2_scale": result.spo2_scale,
                "inputs": {k: getattr(vitals, k) for k in Vitals.__slots__},
            },
        )


class GlucoseScorer:
    """Latest CGM value, its level against the patient's targets, trend and AR2 forecast."""

    name = "glucose"

    def reacts_to(self, observation: Observation) -> bool:
        return observation.code == CGM_CODE

    def score(self, window: PatientWindow, profile: PatientProfile) -> Score | None:
        series = window.cgm_series()
        if not series:
            return None
        # rate of change looks back 15 min, AR2 at two readings: the last 20 min suffice
        recent = [(t, v) for t, v in series[-5:] if series[-1][0] - t <= 20 * 60_000]
        readings = [g.Reading(_ms_to_dt(t), v) for t, v in recent]
        latest = readings[-1]
        forecast = g.ar2_forecast(readings, steps=6) or []
        predicted = g.ar2_predicted_low(readings, threshold=profile.glucose.low)
        rate = g.rate_of_change(readings)
        return Score(
            self.name,
            GLUCOSE_RULES_VERSION,
            latest.mg_dl,
            {
                "level": g.glucose_level(latest.mg_dl, profile.glucose).value,
                "rate_mg_dl_per_min": None if rate is None else round(rate, 3),
                "ar2_version": g.AR2_VERSION,
                "ar2_30min_min_mg_dl": round(min(p.mg_dl for p in forecast), 1)
                if forecast
                else None,
                "predicted_low_at": predicted.at.isoformat() if predicted else None,
                "recent": [{"at": r.at.isoformat(), "mg_dl": r.mg_dl} for r in readings[-3:]],
            },
        )


def default_scorers(news2_max_age_ms: int) -> list[News2Scorer | GlucoseScorer]:
    return [News2Scorer(news2_max_age_ms), GlucoseScorer()]
