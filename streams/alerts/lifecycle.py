"""The alarm lifecycle: debounce, hysteresis, re-alerts, acknowledgements, snoozes, escalation.

Pure and deterministic: the stream calls ``evaluate`` with the conditions the detectors found
at an event time, ``tick`` when (patient) time passes without data, and ``acknowledge`` /
``snooze`` when a care team answers. Each returns the transitions, every one an audit record
(alert topic and InfluxDB). Per patient and kind:

    (absent) --n of m--> open --ack--> acknowledged --clear--> resolved
                          |  \\--snooze--> snoozed --expires--> open
                          |--unacknowledged too long--> escalated (severity and target up)
                          \\--still open after the re-alert interval--> realerted

- **Debounce**: a kind opens when its condition held in ``n`` of the last ``m`` evaluations
  (2 of 3 CGM readings for glucose levels), so one noisy reading or a compression low does
  not page anyone.
- **Hysteresis**: it resolves only after ``clear_after`` evaluations in a row without the
  condition (the detectors also use wider thresholds for open alarms: see policy).
- **Never hidden**: ``urgent_low`` and ``news2_high`` re-alert at their interval while the
  condition lasts even when snoozed or acknowledged; a snooze on ``low`` never touches
  ``urgent_low`` (separate kinds).
- **Escalation**: an ``open`` (unacknowledged) alarm escalates after ``escalate_after_s`` and
  again after the same time, one severity and one target step each time, to the last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..schemas.events import ALERT_SCHEMA_VERSION
from .alarm import TARGETS, Alarm

SEVERITIES = ("info", "warning", "urgent", "critical")
NEVER_HIDDEN = frozenset({"urgent_low", "news2_high"})
MINUTE_MS = 60_000


@dataclass(frozen=True)
class KindPolicy:
    severity: str
    n: int = 1  # open when the condition held in n ...
    m: int = 1  # ... of the last m evaluations
    clear_after: int = 1  # evaluations in a row without it before resolving
    realert_min: int = 30  # re-notify while open (never-hidden kinds: while not resolved)
    escalate_after_min: int | None = None  # unacknowledged this long -> escalate


POLICIES: dict[str, KindPolicy] = {
    "urgent_low": KindPolicy("critical", 2, 3, 2, realert_min=5, escalate_after_min=5),
    "low": KindPolicy("warning", 2, 3, 2, realert_min=15, escalate_after_min=15),
    "predicted_low": KindPolicy("warning", 1, 1, 2, realert_min=30),
    "high": KindPolicy("info", 2, 3, 2, realert_min=120),
    "urgent_high": KindPolicy("critical", 2, 3, 2, realert_min=30, escalate_after_min=30),
    "falling_fast": KindPolicy("warning", 2, 3, 2, realert_min=30),
    "rising_fast": KindPolicy("info", 2, 3, 2, realert_min=120),
    "news2_medium": KindPolicy("urgent", realert_min=60, escalate_after_min=30),
    "news2_high": KindPolicy("critical", realert_min=15, escalate_after_min=10),
    "deterioration": KindPolicy("urgent", realert_min=60, escalate_after_min=30),
    "cgm_stale_15": KindPolicy("info", realert_min=60),
    "cgm_stale_30": KindPolicy("warning", realert_min=60, escalate_after_min=60),
    "vitals_stale": KindPolicy("warning", realert_min=120),
    # the stream could not use this patient's data or state (streams.processing.containment): open
    # until a care team acknowledges it, then resolved at the next tick
    "monitoring_fault": KindPolicy("urgent", realert_min=60, escalate_after_min=30),
}
FAULT_KIND = "monitoring_fault"


def alert_id(patient_id: str, kind: str, opened_at_ms: int) -> str:
    """Stable id: the same patient, kind and opening event time give the same id."""
    return hashlib.sha256(f"{patient_id}|{kind}|{opened_at_ms}".encode()).hexdigest()[:24]


NONCES_KEPT = 16  # per alarm: more actions than this within the action age bound are rare


def _used(alarm: Alarm, nonce: str | None) -> None:
    if nonce is not None:
        alarm.nonces = [*alarm.nonces, nonce][-NONCES_KEPT:]


@dataclass(frozen=True)
class Finding:
    """What a detector found for a kind at an evaluation (a condition that holds)."""

    kind: str
    reason: str
    evidence: dict[str, Any]
    score: float | None
    version: str | None


class Lifecycle:
    """The alarms of one patient: ``alarms`` (kind -> Alarm) and ``history`` (kind -> bits)."""

    __slots__ = ("alarms", "history", "patient_id")  # one per patient, kept in its state

    def __init__(
        self, patient_id: str, alarms: dict[str, Alarm], history: dict[str, list[int]]
    ) -> None:
        self.patient_id = patient_id
        self.alarms = alarms
        self.history = history

    # -- condition-driven ------------------------------------------------------------------
    def evaluate(
        self, evaluated: dict[str, Finding | None], now: int, *, quiet: bool = False
    ) -> list[dict[str, Any]]:
        """Apply one evaluation of ``evaluated`` kinds (None: the condition does not hold)."""
        events: list[dict[str, Any]] = []
        for kind, finding in evaluated.items():
            if finding is None and self._settled(kind):
                continue
            policy = POLICIES[kind]
            bits = self.history.setdefault(kind, [])
            bits.append(1 if finding is not None else 0)
            del bits[: max(0, len(bits) - policy.m)]
            alarm = self.alarms.get(kind)
            if alarm is None:
                if finding is not None and sum(bits) >= policy.n:
                    alarm = Alarm(
                        alert_id(self.patient_id, kind, now),
                        kind,
                        now,
                        policy.severity,
                        notified_at=now,
                        escalated_at=now,
                    )
                    self._remember(alarm, finding)
                    self.alarms[kind] = alarm
                    events.append(self._event(alarm, "opened", now))
                continue
            if finding is not None:
                alarm.clear_count = 0
                self._remember(alarm, finding)
                continue
            alarm.clear_count += 1
            if alarm.clear_count >= policy.clear_after:
                del self.alarms[kind]
                self.history[kind] = []
                events.append(self._event(alarm, "resolved", now, state="resolved"))
        events.extend(self.tick(now, quiet=quiet))
        return events

    def _settled(self, kind: str) -> bool:
        """No alarm and nothing pending: recording that the condition does not hold would
        change no later decision (only 1s count towards n of m), so it is skipped."""
        return kind not in self.alarms and not any(self.history.get(kind, ()))

    # -- time-driven -----------------------------------------------------------------------
    def tick(self, now: int, *, quiet: bool = False) -> list[dict[str, Any]]:
        """Snooze expiry, re-alerts and escalations due at ``now``.

        ``quiet``: the patient's quiet hours: no re-alerts of non-urgent kinds (escalations
        and never-hidden kinds are not affected)."""
        events = []
        for alarm in list(self.alarms.values()):
            policy = POLICIES[alarm.kind]
            if alarm.state == "snoozed" and now >= alarm.snoozed_until:
                alarm.state, alarm.notified_at = "open", now
                events.append(self._event(alarm, "snooze_expired", now))
                continue
            due = now - alarm.notified_at >= policy.realert_min * MINUTE_MS
            if alarm.kind in NEVER_HIDDEN and alarm.state != "open":
                if due:  # acknowledged or snoozed: still re-alerts while it lasts
                    alarm.notified_at = now
                    events.append(self._event(alarm, "realerted", now))
                continue
            if alarm.state != "open":
                continue
            escalate = policy.escalate_after_min
            if (
                escalate is not None
                and alarm.level < len(TARGETS) - 1
                and now - alarm.escalated_at >= escalate * MINUTE_MS
            ):
                alarm.level += 1
                index = min(SEVERITIES.index(alarm.severity) + 1, len(SEVERITIES) - 1)
                alarm.severity = SEVERITIES[index]
                alarm.escalated_at = alarm.notified_at = now
                events.append(self._event(alarm, "escalated", now))
            elif due and not (quiet and alarm.kind not in NEVER_HIDDEN):
                alarm.notified_at = now
                events.append(self._event(alarm, "realerted", now))
        return events

    # -- care team -------------------------------------------------------------------------
    def find(self, alert_id_: str) -> Alarm | None:
        return next((a for a in self.alarms.values() if a.alert_id == alert_id_), None)

    def acknowledge(
        self, alert_id_: str, by: str, now: int, nonce: str | None = None
    ) -> list[dict[str, Any]]:
        """Acknowledge an open or snoozed alarm; [] when it is unknown or already resolved."""
        alarm = self.find(alert_id_)
        if alarm is None or alarm.state == "acknowledged":
            return []
        _used(alarm, nonce)
        alarm.state, alarm.acknowledged_by = "acknowledged", by
        alarm.notified_at = now  # never-hidden kinds re-alert one interval after the ack
        return [self._event(alarm, "acknowledged", now, extra={"by": by})]

    def snooze(
        self, alert_id_: str, by: str, minutes: int, now: int, nonce: str | None = None
    ) -> list[dict[str, Any]]:
        """Silence re-alerts and escalation for ``minutes`` (never for never-hidden kinds)."""
        alarm = self.find(alert_id_)
        if alarm is None:
            return []
        _used(alarm, nonce)
        alarm.state, alarm.snoozed_until = "snoozed", now + minutes * MINUTE_MS
        alarm.notified_at = now
        note = (
            "urgent alarms keep re-alerting while the condition lasts"
            if alarm.kind in NEVER_HIDDEN
            else None
        )
        return [
            self._event(alarm, "snoozed", now, extra={"by": by, "minutes": minutes, "note": note})
        ]

    def close_all(self, now: int, reason: str) -> list[dict[str, Any]]:
        """Resolve every alarm without its condition being judged (the state that held them
        is gone): an explicit transition, so no view keeps them open."""
        events = []
        for kind, alarm in list(self.alarms.items()):
            del self.alarms[kind]
            event = self._event(alarm, "resolved", now, state="resolved")
            events.append({**event, "reason": reason, "evidence": {"closed_by": "quarantine"}})
        return events

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _remember(alarm: Alarm, finding: Finding) -> None:
        alarm.reason, alarm.evidence = finding.reason, finding.evidence
        alarm.score, alarm.version = finding.score, finding.version

    def _event(
        self,
        alarm: Alarm,
        transition: str,
        now: int,
        *,
        state: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        resolved = transition == "resolved"
        return {
            "alert_id": alarm.alert_id,
            "patient_id": self.patient_id,
            "kind": alarm.kind,
            "severity": alarm.severity,
            "opened_at": alarm.opened_at,
            "event_time": now,
            "state": state or alarm.state,
            "transition": transition,
            "level": alarm.level,
            "target": alarm.target,
            "reason": f"{alarm.kind.replace('_', ' ')} resolved." if resolved else alarm.reason,
            "evidence": {} if resolved else alarm.evidence,
            "score": None if resolved else alarm.score,
            "rule_or_model_version": alarm.version,
            "schema_version": ALERT_SCHEMA_VERSION,
            **(extra or {}),
        }
