"""Which alerts a patient's scores imply, and their open/resolve transitions.

Each kind is open while its condition holds and resolved when it stops holding; the
window remembers open alerts, so an alert is emitted once when it opens and once when it
resolves. ``alert_id`` is a hash of patient, kind and the event time it opened at: a replay
after a crash re-emits the same id, so consumers can de-duplicate.

Kinds (conditions on the latest scores, thresholds from the patient's profile):

| kind | condition | severity |
|---|---|---|
| ``urgent_low`` | CGM < urgent low (54 mg/dL) | critical |
| ``low`` | urgent low <= CGM < low (70) | warning |
| ``predicted_low`` | CGM >= low, AR2 forecast < low within 30 min | warning |
| ``high`` | high (180) < CGM <= urgent high (250) | info |
| ``urgent_high`` | CGM > urgent high | critical |
| ``news2_medium`` | NEWS2 5-6, or 3 in a single parameter | urgent |
| ``news2_high`` | NEWS2 >= 7 | critical |
| ``deterioration`` | deterioration model's probability >= its manifest's threshold | urgent |

With the glucose model loaded, ``predicted_low`` comes from the model (P(< 70 mg/dL within
30 min) >= the manifest's threshold while the CGM reads >= low) instead of AR2; AR2 is still
published on the risk topic. Shadow models never alert.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..scoring.base import PatientProfile, Score
from ..windows.patient import OpenAlert, PatientWindow

GLUCOSE_KINDS = ("urgent_low", "low", "predicted_low", "high", "urgent_high")
NEWS2_KINDS = ("news2_medium", "news2_high")
MODEL_KINDS = {"glucose_model": ("predicted_low",), "deterioration_model": ("deterioration",)}
SEVERITY = {
    "urgent_low": "critical",
    "low": "warning",
    "predicted_low": "warning",
    "high": "info",
    "urgent_high": "critical",
    "news2_medium": "urgent",
    "news2_high": "critical",
    "deterioration": "urgent",
}


def alert_id(patient_id: str, kind: str, opened_at_ms: int) -> str:
    """Stable id: the same patient, kind and opening event time give the same id."""
    return hashlib.sha256(f"{patient_id}|{kind}|{opened_at_ms}".encode()).hexdigest()[:24]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str
    reason: str
    evidence: dict[str, Any]
    score: float | None
    version: str


def glucose_conditions(score: Score, profile: PatientProfile) -> list[Condition]:
    value = score.value
    if value is None:
        return []
    t = profile.glucose
    recent = score.details.get("recent", [])
    evidence: dict[str, Any] = {
        "recent_cgm": recent,
        "rate_mg_dl_per_min": score.details.get("rate_mg_dl_per_min"),
    }
    at = recent[-1]["at"] if recent else ""
    found: list[Condition] = []

    def add(kind: str, reason: str, extra: dict[str, Any] | None = None) -> None:
        found.append(Condition(kind, reason, {**evidence, **(extra or {})}, value, score.version))

    if value < t.urgent_low:
        add(
            "urgent_low",
            f"Glucose {value:.0f} mg/dL at {at} is below the urgent-low "
            f"threshold {t.urgent_low:.0f} mg/dL.",
        )
    elif value < t.low:
        add("low", f"Glucose {value:.0f} mg/dL at {at} is below {t.low:.0f} mg/dL.")
    elif score.details.get("predicted_low_at"):
        add(
            "predicted_low",
            f"Glucose {value:.0f} mg/dL is forecast (AR2) to fall below {t.low:.0f} mg/dL by "
            f"{score.details['predicted_low_at']}.",
            {
                "ar2_30min_min_mg_dl": score.details.get("ar2_30min_min_mg_dl"),
                "ar2_version": score.details.get("ar2_version"),
            },
        )
    if value > t.urgent_high:
        add(
            "urgent_high",
            f"Glucose {value:.0f} mg/dL at {at} is above the urgent-high "
            f"threshold {t.urgent_high:.0f} mg/dL.",
        )
    elif value > t.high:
        add("high", f"Glucose {value:.0f} mg/dL at {at} is above {t.high:.0f} mg/dL.")
    return found


def news2_conditions(score: Score) -> list[Condition]:
    if score.value is None:
        return []
    total = int(score.value)
    parameters: dict[str, int] = score.details.get("parameters", {})
    scored = ", ".join(
        f"{name.replace('_', ' ')} {points}" for name, points in parameters.items() if points
    )
    evidence = {
        "parameters": parameters,
        "inputs": score.details.get("inputs"),
        "missing": score.details.get("missing"),
    }
    if total >= 7:
        return [
            Condition(
                "news2_high",
                f"NEWS2 {total} (high): {scored}. Emergency assessment by a clinical team.",
                evidence,
                score.value,
                score.version,
            )
        ]
    if total >= 5 or score.details.get("single_parameter_3"):
        three = [n.replace("_", " ") for n, p in parameters.items() if p == 3]
        why = f"NEWS2 {total}" + (f" with 3 in {', '.join(three)}" if three else "")
        return [
            Condition(
                "news2_medium",
                f"{why}: {scored}. Urgent review by a clinician.",
                evidence,
                score.value,
                score.version,
            )
        ]
    return []


def glucose_model_conditions(score: Score, profile: PatientProfile) -> list[Condition]:
    d = score.details
    threshold, current = d.get("threshold"), d.get("current_mg_dl")
    if score.value is None or threshold is None or current is None:
        return []
    if current < profile.glucose.low or score.value < threshold:
        return []
    forecast = d.get("forecast_mg_dl", {})
    reason = (
        f"Glucose {current:.0f} mg/dL at {d.get('at')} is likely to fall below "
        f"{profile.glucose.low:.0f} mg/dL within 30 min: model probability {score.value:.2f} "
        f"(alerts at >= {threshold:.2f}); forecast in 30 min {forecast.get('30', 0):.0f} mg/dL."
    )
    evidence = {
        "current_mg_dl": current,
        "at": d.get("at"),
        "forecast_mg_dl": forecast,
        "p_low_30": d.get("p_low_30"),
        "p_urgent_low_30": d.get("p_urgent_low_30"),
        "threshold": threshold,
        "recent_cgm": d.get("recent", []),
    }
    return [Condition("predicted_low", reason, evidence, score.value, score.version)]


VITAL_NAMES = {
    "8867-4": ("heart rate", "/min"),
    "9279-1": ("resp. rate", "/min"),
    "59408-5": ("SpO2", " %"),
    "2708-6": ("SpO2", " %"),
    "8480-6": ("systolic BP", " mmHg"),
    "8310-5": ("temp.", " °C"),
}


def deterioration_conditions(score: Score) -> list[Condition]:
    threshold = score.details.get("threshold")
    if score.value is None or threshold is None or score.value < threshold:
        return []
    latest = score.details.get("latest", {})
    shown = ", ".join(
        f"{name} {latest[code]['value']:g}{unit}"
        for code, (name, unit) in VITAL_NAMES.items()
        if code in latest
    )
    horizon = score.details.get("horizon_h") or 12
    reason = (
        f"Risk of deterioration within {horizon} h is {score.value:.2f} (alerts at >= "
        f"{threshold:.2f}). Latest: {shown}. Review the patient."
    )
    evidence = {"p_deterioration": score.value, "threshold": threshold, "latest": latest}
    return [Condition("deterioration", reason, evidence, score.value, score.version)]


def transitions(
    window: PatientWindow,
    scores: list[Score],
    profile: PatientProfile,
    model_kinds: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Alert events (open/resolved) implied by the new scores; updates the window's memory.

    ``model_kinds``: kinds a loaded model drives; the rules leave them alone.
    """
    by_name = {s.name: s for s in scores}
    evaluated: dict[str, Condition | None] = {}
    if "glucose" in by_name:
        rule_kinds = [k for k in GLUCOSE_KINDS if k not in model_kinds]
        evaluated.update(dict.fromkeys(rule_kinds))
        evaluated.update(
            {
                c.kind: c
                for c in glucose_conditions(by_name["glucose"], profile)
                if c.kind not in model_kinds
            }
        )
    if "glucose_model" in by_name:
        evaluated["predicted_low"] = None
        evaluated.update(
            {c.kind: c for c in glucose_model_conditions(by_name["glucose_model"], profile)}
        )
    if "deterioration_model" in by_name:
        evaluated["deterioration"] = None
        evaluated.update(
            {c.kind: c for c in deterioration_conditions(by_name["deterioration_model"])}
        )
    if "news2" in by_name:
        evaluated.update(dict.fromkeys(NEWS2_KINDS))
        evaluated.update({c.kind: c for c in news2_conditions(by_name["news2"])})
    events = []
    now = window.watermark
    for kind, condition in evaluated.items():
        open_alert = window.alerts.get(kind)
        if condition is not None and open_alert is None:
            opened = OpenAlert(alert_id(window.patient_id, kind, now), now, SEVERITY[kind])
            window.alerts[kind] = opened
            events.append(_event(window.patient_id, kind, opened, "open", condition, now))
        elif condition is None and open_alert is not None:
            del window.alerts[kind]
            events.append(_event(window.patient_id, kind, open_alert, "resolved", None, now))
    return events


def _event(
    patient_id: str, kind: str, alert: OpenAlert, state: str, condition: Condition | None, now: int
) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "patient_id": patient_id,
        "kind": kind,
        "severity": alert.severity,
        "opened_at": _iso(alert.opened_at),
        "event_time": _iso(now),
        "state": state,
        "reason": condition.reason if condition else f"{kind.replace('_', ' ')} resolved.",
        "evidence": condition.evidence if condition else {},
        "score": condition.score if condition else None,
        "rule_or_model_version": condition.version if condition else None,
    }
