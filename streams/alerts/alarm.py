"""One alarm's state as the patient's state keeps it (the lifecycle that changes it:
``streams.alerts.lifecycle``; the state: ``streams.processing.state``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

TARGETS = ("care_team", "charge_nurse", "physician")


@dataclass
class Alarm:
    """One alarm's state, kept in the patient's window."""

    alert_id: str
    kind: str
    opened_at: int  # event time, ms
    severity: str
    state: str = "open"  # open | acknowledged | snoozed
    level: int = 0  # escalation steps taken
    notified_at: int = 0  # last time the care team was notified (open, re-alert, escalation)
    escalated_at: int = 0
    snoozed_until: int = 0
    clear_count: int = 0
    acknowledged_by: str | None = None
    # the latest condition: what a re-alert or escalation says
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    version: str | None = None
    nonces: list[str] = field(default_factory=list)  # of the signed actions applied (recent)

    @property
    def target(self) -> str:
        return TARGETS[min(self.level, len(TARGETS) - 1)]

    def to_list(self) -> list[Any]:
        return [
            self.alert_id, self.kind, self.opened_at, self.severity, self.state, self.level,
            self.notified_at, self.escalated_at, self.snoozed_until, self.clear_count,
            self.acknowledged_by, self.reason, self.evidence, self.score, self.version,
        ]  # fmt: skip

    @classmethod
    def from_list(cls, data: list[Any]) -> Alarm:
        """An alarm as stored by window format 2 (positional; read for migration only)."""
        return cls(*data)

    def to_dict(self) -> dict[str, Any]:
        """By field name: a field added later never shifts what was stored before (and
        ``nonces`` is left out while empty: most alarms never see an action)."""
        stored = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.nonces:
            del stored["nonces"]
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alarm:
        """Fields missing from older records take their defaults; unknown ones are ignored."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
