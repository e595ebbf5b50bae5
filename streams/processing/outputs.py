"""What the per-patient core hands back: observations applied (before the models), and the
finished, sealed output of one event of one patient."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schemas.observation import Observation
from ..scoring.base import PatientProfile, Score
from ..scoring.families import ModelRequest
from ..windows.patient import Applied
from .state import PatientState


def no_applied() -> dict[Applied, int]:
    return dict.fromkeys(Applied, 0)


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field
class PatientOutput:
    """What one event of one patient produced, finished: every alarm event sealed on the
    patient's audit chain, the risk event, the time-series lines."""

    patient_id: str
    alerts: list[bytes] = field(default_factory=list)  # alert events (JSON), sealed
    risk: bytes | None = None  # the risk event (JSON), when anything was inserted
    lines: list[str] = field(default_factory=list)  # line protocol: observations, scores, alerts
    applied: dict[Applied, int] = field(default_factory=no_applied)
    quality: list[dict[str, Any]] = field(default_factory=list)  # alarm-quality judgements
    cgm_inserted: int = 0
    model_error: str | None = None  # the model scores failed: the rule alarms still went out


@dataclass(slots=True)
class Observed:
    """One patient's observations applied to its state, before the models score it (inside
    the core only: :meth:`~streams.processing.pipeline.PatientPipeline.observations` scores
    and seals it into a :class:`PatientOutput`)."""

    state: PatientState
    applied: dict[Applied, int] = field(default_factory=no_applied)
    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # alarm events, not sealed
    quality: list[dict[str, Any]] = field(default_factory=list)
    cgm_inserted: int = 0
    rule_scores: list[Score] = field(default_factory=list)
    profile: PatientProfile = field(default_factory=PatientProfile)
    requests: list[ModelRequest] = field(default_factory=list)  # scored across patients

    @property
    def inserted(self) -> bool:
        return self.applied[Applied.INSERTED] > 0


@dataclass(slots=True)
class PatientResult:
    """What applying one patient's event came to: the state to store, the outputs to publish
    (in order), and what could not be used."""

    state: PatientState | None  # to store; None: nothing changed (a tick of nobody)
    outputs: list[PatientOutput] = field(default_factory=list)
    failed: list[Observation] = field(default_factory=list)  # refused: dead-letter them
    quarantined: bytes | None = None  # the stored state that could not be used
    error: str | None = None  # the exception type that caused any of the above
