"""Poison containment: one record or one patient's state never stops anyone else's alarms.

The pipeline applies each patient's observations through :func:`apply_contained`.
When applying them raises for a patient, the patient's window is restored to what it was
before the batch and the observations are applied again one at a time. A record that fails
is then tried on a *fresh* window to find what is to blame:

- it fails there too: **the record is the poison**. It is refused (its record goes to the
  dead-letter topic with reason ``processing``); the stored window, its alarms, baselines
  and audit head stay exactly as they were, and the patient's other records still count.
- it applies to a fresh window: **the stored state is the cause**. The state is
  *quarantined* (its bytes go to the dead-letter topic with reason ``state``), the patient
  starts again from an empty window (keeping the audit chain's head), the batch is applied
  to it, every alarm the old state held is closed with an explicit ``resolved`` transition
  (reason: state quarantined) so no page shows an alarm the worker no longer holds, and a
  ``monitoring_fault`` alarm tells the care team.

A stored state that cannot be loaded at all is quarantined the same way (its alarms cannot
be read: the fault event names the quarantine, and the alarm views close the patient's
earlier alarms on it).

Pure with respect to I/O: the caller loads and stores states and sends the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..schemas.observation import Observation
from . import codec
from .outputs import Observed
from .state import PatientState

#: Applies (patient id, state or None for a new patient, observations, arrived_at) -> what
#: they came to; may raise.
Observe = Callable[[str, PatientState | None, list[Observation], int | None], Observed]


@dataclass(slots=True)
class Contained:
    """What applying one patient's observations came to, before the models."""

    state: PatientState  # the state to store
    observed: list[Observed] = field(default_factory=list)
    failed: list[Observation] = field(default_factory=list)  # refused: dead-letter them
    quarantined: bytes | None = None  # the stored state that could not be used
    replaced: PatientState | None = None  # the quarantined state, when it could be read
    error: str | None = None  # the exception type that caused any of the above


def apply_contained(
    observe: Observe,
    patient_id: str,
    observations: list[Observation],
    *,
    load: Callable[[], PatientState | None],
    stored: Callable[[], bytes | None],
    arrived_at: int | None = None,
) -> Contained:
    """Apply ``observations``; contain any failure to the records or the state that caused it.

    ``load`` gives the patient's current state (may raise on a corrupt state); ``stored``
    the bytes it was loaded from, to restore it after a failure."""
    state: PatientState | None
    try:
        state = load()
    except Exception as exc:  # noqa: BLE001 - a corrupt state quarantines one patient
        result = Contained(PatientState.new(patient_id))
        _quarantine(result, stored(), type(exc).__name__)
        state = None
    else:
        try:
            observed = observe(patient_id, state, observations, arrived_at)
        except Exception as exc:  # noqa: BLE001 - contained below, record by record
            result = Contained(PatientState.new(patient_id), error=type(exc).__name__)
            state = readable(stored())
        else:
            return Contained(observed.state, [observed])  # the common case: nothing failed
    state = _one_by_one(observe, patient_id, state, observations, arrived_at, result)
    if (
        result.quarantined is None
        and state is not None
        and result.failed
        and any(_applies_fresh(observe, patient_id, o, arrived_at) for o in result.failed)
    ):
        # a record that fails only on the stored state: the state is the cause
        _quarantine(result, stored(), result.error or "")
        result.replaced = readable(stored())
        result.failed, result.observed = [], []  # all of the batch goes to a fresh state
        audit = result.replaced.audit if result.replaced is not None else None
        fresh = PatientState.new(patient_id, audit)
        state = _one_by_one(observe, patient_id, fresh, observations, arrived_at, result)
    if state is not None:
        result.state = state
    return result


def readable(stored: bytes | None) -> PatientState | None:
    """A stored state when it can be decoded, else None (never raises)."""
    try:
        return codec.load(stored)
    except Exception:  # noqa: BLE001 - unreadable: the caller starts the patient again
        return None


def _applies_fresh(
    observe: Observe, patient_id: str, observation: Observation, arrived_at: int | None
) -> bool:
    """Whether ``observation`` applies to a new patient (the result is thrown away)."""
    try:
        observe(patient_id, None, [observation], arrived_at)
    except Exception:  # noqa: BLE001 - the record fails on its own: it is the poison
        return False
    return True


def _one_by_one(
    observe: Observe,
    patient_id: str,
    state: PatientState | None,
    observations: list[Observation],
    arrived_at: int | None,
    result: Contained,
) -> PatientState | None:
    for observation in sorted(observations, key=lambda o: o.effective_at):
        before = codec.encode(state) if state is not None else None
        try:
            observed = observe(patient_id, state, [observation], arrived_at)
        except Exception as exc:  # noqa: BLE001 - this record is refused, the rest count
            result.error = result.error or type(exc).__name__
            result.failed.append(observation)
            state = codec.load(before)
            continue
        result.observed.append(observed)
        state = observed.state
    return state


def _quarantine(result: Contained, state: bytes | None, error: str) -> None:
    result.quarantined = state or b""
    result.error = error
