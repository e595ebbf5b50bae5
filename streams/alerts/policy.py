"""Which conditions a patient's scores imply (the detectors), fed to the alarm lifecycle.

The detectors say, per kind, whether its condition holds now, with the reason in words and
the evidence; ``streams.alerts.lifecycle`` decides what that means for the alarm (debounce,
hysteresis, re-alerts, escalation, acknowledgements). ``alert_id`` is a hash of patient, kind
and the event time it opened at: a replay after a crash re-emits the same id.

Kinds (conditions on the latest scores, thresholds from the patient's profile; an open
glucose alarm keeps holding within 5 mg/dL of its threshold, 10 for highs: hysteresis):

| kind | condition | severity |
|---|---|---|
| ``urgent_low`` | CGM < urgent low (54 mg/dL) | critical |
| ``low`` | CGM < low (70) | warning |
| ``predicted_low`` | CGM >= low, AR2 forecast < low within 30 min | warning |
| ``high`` | high (180) < CGM <= urgent high (250) | info |
| ``urgent_high`` | CGM > urgent high | critical |
| ``news2_medium`` | NEWS2 5-6, or 3 in a single parameter | urgent |
| ``news2_high`` | NEWS2 >= 7 | critical |
| ``deterioration`` | deterioration model's probability >= its manifest's threshold | urgent |
| ``falling_fast`` | CGM falling >= 2 mg/dL/min while low <= CGM < 120 (range-gated) | warning |
| ``rising_fast`` | CGM rising >= 3 mg/dL/min above 200 | info |
| ``cgm_stale_15`` | a CGM patient's last reading 15-30 min old | info |
| ``cgm_stale_30`` | ... 30 min old or more | warning |
| ``vitals_stale`` | no vital sign for ``stream.vitals_stale_s`` (6 h) | warning |
| ``monitoring_fault`` | the stored state could not be used (``processing.containment``) | urgent |

With the glucose model loaded, ``predicted_low`` comes from the model (P(< 70 mg/dL within
30 min) >= the manifest's threshold while the CGM reads >= low and, where the gate's
``predicted_low_rule`` says so, while it falls) — or, where the gate's
``predicted_low_cgm_below`` names an early-warning level, while the CGM reads below it — instead
of AR2, unless the manifest's gate says the model's alarm lost to AR2's on validation patients
(then AR2 keeps it); AR2 is still published on the risk topic. Shadow models never alert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..scoring.base import PatientProfile, Score
from ..scoring.families import (
    DEFAULT_LOW,
    deterioration_alarm_holds,
    glucose_alarm_holds,
    predicted_low_fires,
)
from ..timefmt import clock_time, iso
from ..windows.patient import CGM_CODE, PatientWindow
from .lifecycle import Finding, Lifecycle

GLUCOSE_KINDS = (
    "urgent_low", "low", "predicted_low", "high", "urgent_high", "falling_fast", "rising_fast"
)  # fmt: skip
# rate-of-change alarms only where the rate matters: a fast fall from a high value is the
# treatment working, a fast fall towards a low is not (Dexcom-style range gating)
FALL_RATE, FALL_GATE = -2.0, 120.0  # mg/dL/min, below this glucose
RISE_RATE, RISE_GATE = 3.0, 200.0  # mg/dL/min, above this glucose
NEWS2_KINDS = ("news2_medium", "news2_high")
MODEL_KINDS = {"glucose_model": ("predicted_low",), "deterioration_model": ("deterioration",)}
STALE_KINDS = ("cgm_stale_15", "cgm_stale_30", "vitals_stale")
GLUCOSE_MARGIN, HIGH_MARGIN = 5.0, 10.0  # hysteresis of open glucose alarms, mg/dL
MINUTE_MS = 60_000
CGM_STALE_MIN, CGM_LOST_MIN = 15, 30  # no CGM for this long: cgm_stale_15, cgm_stale_30
Condition = Finding  # what a detector returns for a kind whose condition holds


def glucose_conditions(
    score: Score, profile: PatientProfile, open_kinds: frozenset[str] = frozenset()
) -> list[Condition]:
    value = score.value
    if value is None:
        return []
    t = profile.glucose
    details = score.details
    rate = details.get("rate_mg_dl_per_min")
    if (
        not open_kinds.intersection(GLUCOSE_KINDS)
        and t.low <= value <= t.high
        and not details.get("predicted_low_at")
        and (rate is None or (rate > FALL_RATE and rate < RISE_RATE))
    ):
        return []  # in range, steady, no glucose alarm open: nothing to build
    recent = details.get("recent", [])
    at = clock_time(recent[-1]["at"], profile.utc_offset) if recent else ""
    found: list[Condition] = []

    def add(kind: str, reason: str, extra: dict[str, Any] | None = None) -> None:
        evidence = {"recent_cgm": recent, "rate_mg_dl_per_min": rate, **(extra or {})}
        found.append(Condition(kind, reason, evidence, value, score.version))

    def below(kind: str, threshold: float, words: str) -> bool:
        """Below the threshold, or (open alarm) within the hysteresis margin above it."""
        margin = GLUCOSE_MARGIN if kind in open_kinds else 0.0
        if value >= threshold + margin:
            return False
        if value < threshold:
            what = f"{words} {threshold:.0f}" if words else f"{threshold:.0f}"
            add(kind, f"Glucose {value:.0f} mg/dL at {at} is below {what} mg/dL.")
        else:
            add(
                kind,
                f"Glucose {value:.0f} mg/dL at {at} is recovering; the alarm clears at "
                f"{threshold + margin:.0f} mg/dL.",
            )
        return True

    def above(kind: str, threshold: float, words: str) -> bool:
        margin = HIGH_MARGIN if kind in open_kinds else 0.0
        if value <= threshold - margin:
            return False
        if value > threshold:
            what = f"{words} {threshold:.0f}" if words else f"{threshold:.0f}"
            add(kind, f"Glucose {value:.0f} mg/dL at {at} is above {what} mg/dL.")
        else:
            add(
                kind,
                f"Glucose {value:.0f} mg/dL at {at} is coming down; the alarm clears at "
                f"{threshold - margin:.0f} mg/dL.",
            )
        return True

    # low holds whenever glucose is below it, urgent or not: an urgent low does not "resolve"
    # the low alarm; predicting a low only makes sense above it
    below("urgent_low", t.urgent_low, "the urgent-low threshold")
    if not below("low", t.low, "") and score.details.get("predicted_low_at"):
        add(
            "predicted_low",
            f"Glucose {value:.0f} mg/dL is forecast (AR2) to fall below {t.low:.0f} mg/dL by "
            f"{score.details['predicted_low_at']}.",
            {
                "ar2_30min_min_mg_dl": score.details.get("ar2_30min_min_mg_dl"),
                "ar2_version": score.details.get("ar2_version"),
            },
        )
    if not above("urgent_high", t.urgent_high, "the urgent-high threshold"):
        above("high", t.high, "")
    for kind, reason in rate_conditions(value, rate, t.low, at):
        add(kind, reason)
    return found


def rate_conditions(value: float, rate: float | None, low: float, at: str) -> list[tuple[str, str]]:
    """Range-gated rate-of-change kinds that hold, with their reasons."""
    if rate is None:
        return []
    found = []
    if rate <= FALL_RATE and low <= value < FALL_GATE:
        found.append((
            "falling_fast",
            f"Glucose {value:.0f} mg/dL at {at} is falling {-rate:.1f} "
            f"mg/dL/min (alarm at {-FALL_RATE:.0f} or faster below {FALL_GATE:.0f} mg/dL).",
        ))  # fmt: skip
    if rate >= RISE_RATE and value > RISE_GATE:
        found.append((
            "rising_fast",
            f"Glucose {value:.0f} mg/dL at {at} is rising {rate:.1f} mg/dL/min "
            f"(alarm at {RISE_RATE:.0f} or faster above {RISE_GATE:.0f} mg/dL).",
        ))  # fmt: skip
    return found


def news2_conditions(score: Score) -> list[Condition]:
    if score.value is None:
        return []
    total = int(score.value)
    if total < 5 and not score.details.get("single_parameter_3"):
        return []
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
    if not glucose_alarm_holds(score, profile):
        return []
    d = score.details
    threshold, current = d["threshold"], d["current_mg_dl"]
    rule, trend = d.get("predicted_low_rule", "probability"), d.get("trend_mg_dl_min")
    forecast = d.get("forecast_mg_dl", {})
    by_model = predicted_low_fires(
        score.value or 0.0, current, trend or 0.0, threshold=threshold, rule=rule,
        low=profile.glucose.low,
    )  # fmt: skip
    if not by_model:  # the threshold half of an any-of policy holds
        level = d["predicted_low_cgm_below"] + profile.glucose.low - DEFAULT_LOW
        reason = (
            f"Glucose {current:.0f} mg/dL at "
            f"{clock_time(str(d.get('at')), profile.utc_offset)} is below the early-warning "
            f"level {level:.0f} mg/dL (low: {profile.glucose.low:.0f}); model probability of "
            f"falling below the low within 30 min {score.value:.2f}."
        )
        evidence = {"current_mg_dl": current, "at": d.get("at"), "early_warning_mg_dl": level,
                    "p_low_30": d.get("p_low_30"), "recent_cgm": d.get("recent", [])}  # fmt: skip
        return [Condition("predicted_low", reason, evidence, score.value, score.version)]
    reason = (
        f"Glucose {current:.0f} mg/dL at {clock_time(str(d.get('at')), profile.utc_offset)} "
        "is likely to fall below "
        f"{profile.glucose.low:.0f} mg/dL within 30 min: model probability {score.value:.2f} "
        f"(alerts at >= {threshold:.2f}"
        + (", while falling" if rule == "probability_falling" else "")
        + f"); forecast in 30 min {forecast.get('30', 0):.0f} mg/dL"
        + (f", falling {-trend:.1f} mg/dL/min." if trend is not None and trend < 0 else ".")
    )
    evidence = {
        "current_mg_dl": current,
        "at": d.get("at"),
        "forecast_mg_dl": forecast,
        "p_low_30": d.get("p_low_30"),
        "p_urgent_low_30": d.get("p_urgent_low_30"),
        "threshold": threshold,
        "trend_mg_dl_min": trend,
        "recent_cgm": d.get("recent", []),
        "drivers": d.get("drivers", []),
    }
    return [
        Condition("predicted_low", reason + _driven_by(d), evidence, score.value, score.version)
    ]


def _driven_by(details: dict[str, Any]) -> str:
    drivers = details.get("drivers") or []
    return f" Driven by: {', '.join(str(x['signal']) for x in drivers)}." if drivers else ""


VITAL_NAMES = {
    "8867-4": ("heart rate", "/min"),
    "9279-1": ("resp. rate", "/min"),
    "59408-5": ("SpO2", " %"),
    "2708-6": ("SpO2", " %"),
    "8480-6": ("systolic BP", " mmHg"),
    "8310-5": ("temp.", " °C"),
}


def deterioration_conditions(score: Score) -> list[Condition]:
    if not deterioration_alarm_holds(score):
        return []
    threshold = score.details["threshold"]
    latest = score.details.get("latest", {})
    shown = ", ".join(
        f"{name} {latest[code]['value']:g}{unit}"
        for code, (name, unit) in VITAL_NAMES.items()
        if code in latest
    )
    horizon = score.details.get("horizon_h") or 12
    reason = (
        f"Risk of deterioration within {horizon} h is {score.value:.2f} (alerts at >= "
        f"{threshold:.2f}). Latest: {shown}.{_driven_by(score.details)} Review the patient."
    )
    evidence = {
        "p_deterioration": score.value,
        "threshold": threshold,
        "latest": latest,
        "drivers": score.details.get("drivers", []),
    }
    return [Condition("deterioration", reason, evidence, score.value, score.version)]


def stale_conditions(
    window: PatientWindow,
    now: int,
    vitals_stale_ms: int,
    utc_offset: Callable[[int], int] | None = None,
) -> dict[str, Condition | None]:
    """Stale-data kinds at patient time ``now``: only for signals the patient has sent
    (reasons in clock time, the patient's own when ``utc_offset`` is known)."""
    evaluated: dict[str, Condition | None] = {}
    last_cgm = window.last_seen.get(CGM_CODE)
    if last_cgm is not None:
        minutes = (now - last_cgm) / MINUTE_MS
        evaluated["cgm_stale_15"] = evaluated["cgm_stale_30"] = None
        if minutes >= CGM_STALE_MIN:
            evidence = {"last_cgm_at": iso(last_cgm), "minutes_without_cgm": round(minutes)}
            last_at = clock_time(iso(last_cgm), utc_offset)
            reason = f"No CGM reading for {minutes:.0f} min (last at {last_at})."
            if minutes < CGM_LOST_MIN:
                evaluated["cgm_stale_15"] = Condition(
                    "cgm_stale_15", reason, evidence, minutes, "staleness-1"
                )
            else:
                evaluated["cgm_stale_30"] = Condition(
                    "cgm_stale_30",
                    reason + " Check the sensor and the patient.",
                    evidence,
                    minutes,
                    "staleness-1",
                )
    if window.vitals:
        last = max((samples[-1][0] for samples in window.vitals.values() if samples), default=None)
        if last is not None:
            evaluated["vitals_stale"] = None
            if now - last >= vitals_stale_ms:
                hours = (now - last) / 3_600_000
                evaluated["vitals_stale"] = Condition(
                    "vitals_stale",
                    f"No vital signs for {hours:.1f} h "
                    f"(last at {clock_time(iso(last), utc_offset)}).",
                    {"last_vitals_at": iso(last)},
                    hours,
                    "staleness-1",
                )
    return evaluated


def stale_at(window: PatientWindow, vitals_stale_ms: int) -> int | None:
    """The earliest patient time at which a stale-data condition can start to hold (None
    for a patient who has sent neither CGM nor vital signs)."""
    starts = []
    last_cgm = window.last_seen.get(CGM_CODE)
    if last_cgm is not None:
        starts.append(last_cgm + CGM_STALE_MIN * MINUTE_MS)
    last_vital = max((s[-1][0] for s in window.vitals.values() if s), default=None)
    if last_vital is not None:
        starts.append(last_vital + vitals_stale_ms)
    return min(starts, default=None)


def detect(
    alarms: Lifecycle,
    scores: list[Score],
    profile: PatientProfile,
    model_kinds: frozenset[str] = frozenset(),
) -> dict[str, Condition | None]:
    """Per kind the scores cover: its condition, or None when it does not hold.

    ``model_kinds``: kinds a loaded model drives; the rules leave them alone.
    """
    by_name = {s.name: s for s in scores}
    evaluated: dict[str, Condition | None] = {}
    open_kinds = frozenset(alarms.alarms)
    if "glucose" in by_name:
        evaluated.update(dict.fromkeys(k for k in GLUCOSE_KINDS if k not in model_kinds))
        evaluated.update(
            {
                c.kind: c
                for c in glucose_conditions(by_name["glucose"], profile, open_kinds)
                if c.kind not in model_kinds
            }
        )
    if "glucose_model" in by_name and "predicted_low" in model_kinds:
        evaluated["predicted_low"] = None
        evaluated.update(
            {c.kind: c for c in glucose_model_conditions(by_name["glucose_model"], profile)}
        )
    if "deterioration_model" in by_name and "deterioration" in model_kinds:
        evaluated["deterioration"] = None
        model = by_name["deterioration_model"]
        evaluated.update({c.kind: c for c in deterioration_conditions(model)})
    if "news2" in by_name:
        evaluated.update(dict.fromkeys(NEWS2_KINDS))
        evaluated.update({c.kind: c for c in news2_conditions(by_name["news2"])})
    return evaluated


def render(event: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle event as published: times as ISO 8601 UTC."""
    return {**event, "opened_at": iso(event["opened_at"]), "event_time": iso(event["event_time"])}


def transitions(
    window: PatientWindow,
    alarms: Lifecycle,
    scores: list[Score],
    profile: PatientProfile,
    model_kinds: frozenset[str] = frozenset(),
    vitals_stale_ms: int = 6 * 3_600_000,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """Alarm events implied by new scores at event time ``now`` (default: the newest), as
    ``alarms`` (the patient's alarm lifecycle, kept in its state) takes them.

    Rules pass the time of the reading they evaluate, so an alarm's id and opening time do
    not depend on how the patient's topics interleaved on the way in."""
    now = window.watermark if now is None else now
    evaluated = detect(alarms, scores, profile, model_kinds)
    evaluated.update(stale_conditions(window, now, vitals_stale_ms, profile.utc_offset))
    events = alarms.evaluate(evaluated, now, quiet=profile.is_quiet(now))
    return [render(e) for e in events]
