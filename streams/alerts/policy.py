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
SEVERITY = {
    "urgent_low": "critical",
    "low": "warning",
    "predicted_low": "warning",
    "high": "info",
    "urgent_high": "critical",
    "news2_medium": "urgent",
    "news2_high": "critical",
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


def transitions(
    window: PatientWindow, scores: list[Score], profile: PatientProfile
) -> list[dict[str, Any]]:
    """Alert events (open/resolved) implied by the new scores; updates the window's memory."""
    by_name = {s.name: s for s in scores}
    evaluated: dict[str, Condition | None] = {}
    if "glucose" in by_name:
        evaluated.update(dict.fromkeys(GLUCOSE_KINDS))
        evaluated.update({c.kind: c for c in glucose_conditions(by_name["glucose"], profile)})
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
