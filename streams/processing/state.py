"""``PatientState``: everything the worker keeps about one patient, owned by the core.

Its parts are typed by the rooms that know what they mean, and written only here, in
processing (the pipeline and containment):

- ``window`` (:class:`~streams.windows.patient.PatientWindow`): the signals — CGM, vitals,
  labs, baselines, counters — that the rules and the models read;
- ``alarms`` (:class:`~streams.alerts.lifecycle.Lifecycle`): each alarm kind's state and
  its debounce history;
- ``predictions`` (:class:`~streams.alerts.quality.PredictionMemory`): predicted lows
  awaiting their truth (live alarm quality);
- ``audit`` (:class:`~streams.access.audit.AuditHead`): the patient's audit chain, its
  length and last link; sealing returns the new head, the core keeps it;
- ``personal``: the glucose forecast's per-patient adaptation (stored form); scoring
  returns the new one with its score, the core keeps it;
- ``arrived_at``: the wall clock (ms) when the patient's latest data was processed.

Stored by :mod:`streams.processing.codec` (format 4, by field name; formats 2 and 3 read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..access.audit import AuditHead
from ..alerts.lifecycle import Lifecycle
from ..alerts.quality import PredictionMemory
from ..windows.patient import PatientWindow

NO_PREDICTIONS = PredictionMemory()
NEW_CHAIN = AuditHead()


@dataclass(slots=True)
class PatientState:
    """One patient's state: see the module docstring."""

    window: PatientWindow
    alarms: Lifecycle
    # immutable: replaced, never changed in place (a new patient shares the empty ones)
    predictions: PredictionMemory = NO_PREDICTIONS
    audit: AuditHead = NEW_CHAIN
    personal: list[Any] = field(default_factory=list)
    arrived_at: int = 0

    @classmethod
    def new(cls, patient_id: str, audit: AuditHead | None = None) -> PatientState:
        """A patient seen for the first time (or restarted: ``audit`` continues its chain)."""
        return cls(
            PatientWindow(patient_id),
            Lifecycle(patient_id, {}, {}),
            audit=audit if audit is not None else NEW_CHAIN,
        )

    @property
    def patient_id(self) -> str:
        return self.window.patient_id
