"""The scorer interface and per-patient scoring settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..rules.glucose import GlucoseTargets
from ..schemas.observation import Observation
from ..windows.patient import PatientWindow


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """Per-patient clinical settings the scores and alerts use."""

    spo2_scale: int = 1  # 2 for patients with hypercapnic respiratory failure
    glucose: GlucoseTargets = GlucoseTargets()
    quiet: Callable[[int], bool] | None = None  # the patient's quiet hours, at a time (ms)
    utc_offset: Callable[[int], int] | None = None  # minutes from UTC at a time (ms)

    def utc_offset_minutes(self, t_ms: int) -> int:
        """The patient's own offset from UTC (0: nothing known, time of day in UTC)."""
        return 0 if self.utc_offset is None else self.utc_offset(t_ms)

    def is_quiet(self, t_ms: int) -> bool:
        return self.quiet is not None and self.quiet(t_ms)


@dataclass(frozen=True, slots=True)
class Score:
    """One named, versioned score of one patient at one event time."""

    name: str
    version: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    # the glucose forecast's per-patient adaptation after this score (stored form), for the
    # core to keep with the patient's state; None: unchanged. Not published.
    adaptation: list[Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "value": self.value, **self.details}


class Scorer(Protocol):
    name: str

    def reacts_to(self, observation: Observation) -> bool:
        """Whether a new observation of this kind can change the score."""
        ...

    def score(self, window: PatientWindow, profile: PatientProfile) -> Score | None: ...
