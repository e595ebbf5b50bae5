"""Poison containment: one record or one patient's state never stops anyone else's alarms.

The patient stream applies each patient's observations through :func:`apply_contained`.
When the pipeline raises for a patient, the patient's window is restored to what it was
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

Pure with respect to I/O: the caller loads and stores windows and sends the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..schemas.observation import Observation
from ..windows.patient import PatientWindow
from .pipeline import PatientOutput, PatientPipeline


@dataclass
class PatientResult:
    """What applying one patient's observations came to."""

    window: PatientWindow  # the window to store
    outputs: list[PatientOutput] = field(default_factory=list)
    failed: list[Observation] = field(default_factory=list)  # refused: dead-letter them
    quarantined: bytes | None = None  # the stored state that could not be used
    replaced: PatientWindow | None = None  # the quarantined state, when it could be read
    error: str | None = None  # the exception type that caused any of the above


def load_window(stored: bytes | None) -> PatientWindow | None:
    """A stored window, or None for a patient seen for the first time (may raise)."""
    return PatientWindow.from_bytes(stored) if stored else None


def apply_contained(
    pipeline: PatientPipeline,
    patient_id: str,
    observations: list[Observation],
    *,
    load: Callable[[], PatientWindow | None],
    stored: Callable[[], bytes | None],
    arrived_at: int,
) -> PatientResult:
    """Apply ``observations``; contain any failure to the records or the state that caused it.

    ``load`` gives the patient's current window (may raise on a corrupt state); ``stored``
    the bytes it was loaded from, to restore it after a failure."""
    try:
        window = load()
    except Exception as exc:  # noqa: BLE001 - a corrupt state quarantines one patient
        result = _failing(patient_id)
        _quarantine(result, stored(), type(exc).__name__)
        window = None
    else:
        try:
            output = pipeline.process(patient_id, window, observations, arrived_at=arrived_at)
        except Exception as exc:  # noqa: BLE001 - contained below, record by record
            result = _failing(patient_id)
            result.error = type(exc).__name__
            window = _restore(stored)
        else:
            return PatientResult(output.window, [output])  # the common case: nothing failed
    window = _one_by_one(pipeline, patient_id, window, observations, arrived_at, result)
    if (
        result.quarantined is None
        and window is not None
        and result.failed
        and any(_applies_fresh(pipeline, patient_id, o, arrived_at) for o in result.failed)
    ):
        # a record that fails only on the stored window: the state is the cause
        _quarantine(result, stored(), result.error or "")
        result.replaced = _restore(stored)
        result.failed, result.outputs = [], []  # all of the batch goes to a fresh window
        fresh = _fresh(patient_id, result.replaced)
        window = _one_by_one(pipeline, patient_id, fresh, observations, arrived_at, result)
    if window is not None:
        result.window = window
    return result


def _applies_fresh(
    pipeline: PatientPipeline, patient_id: str, observation: Observation, arrived_at: int
) -> bool:
    """Whether ``observation`` applies to an empty window (the result is thrown away)."""
    try:
        pipeline.process(patient_id, None, [observation], arrived_at=arrived_at)
    except Exception:  # noqa: BLE001 - the record fails on its own: it is the poison
        return False
    return True


def _fresh(patient_id: str, replaced: PatientWindow | None) -> PatientWindow:
    """An empty window that continues ``replaced``'s audit chain (when it could be read)."""
    window = PatientWindow(patient_id)
    if replaced is not None:
        window.audit_seq, window.audit_head = replaced.audit_seq, replaced.audit_head
    return window


def _failing(patient_id: str) -> PatientResult:
    """The result of a patient whose batch failed: an empty window unless one applies."""
    return PatientResult(PatientWindow(patient_id))


def _one_by_one(
    pipeline: PatientPipeline,
    patient_id: str,
    window: PatientWindow | None,
    observations: list[Observation],
    arrived_at: int,
    result: PatientResult,
) -> PatientWindow | None:
    for observation in sorted(observations, key=lambda o: o.effective_at):
        before = window.to_bytes() if window is not None else None
        try:
            output = pipeline.process(patient_id, window, [observation], arrived_at=arrived_at)
        except Exception as exc:  # noqa: BLE001 - this record is refused, the rest count
            result.error = result.error or type(exc).__name__
            result.failed.append(observation)
            window = load_window(before)
            continue
        result.outputs.append(output)
        window = output.window
    return window


def _restore(stored: Callable[[], bytes | None]) -> PatientWindow | None:
    try:
        return load_window(stored())
    except Exception:  # noqa: BLE001 - cannot happen for a state that loaded before
        return None


def _quarantine(result: PatientResult, state: bytes | None, error: str) -> None:
    result.quarantined = state or b""
    result.error = error


def contained_tick(
    pipeline: PatientPipeline, load: Callable[[], PatientWindow | None], wall_ms: int
) -> tuple[PatientWindow, PatientOutput] | str | None:
    """(window, ``pipeline.tick``'s output); None without a window; the exception type when
    loading or ticking the window fails (the caller quarantines the patient)."""
    try:
        window = load()
        return None if window is None else (window, pipeline.tick(window, wall_ms))
    except Exception as exc:  # noqa: BLE001 - one patient's state, contained
        return type(exc).__name__
