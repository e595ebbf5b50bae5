"""Live alarm quality: each predictive low alarm judged when the truth arrives.

Truth is the patient's own later CGM: a ``predicted_low`` that opened at *t* is a **hit** if
a reading below 70 mg/dL arrives within 30 min (lead = time to that reading), **false** once
a reading later than *t* + 30 min arrives without one. A **low event** starts at a reading
below 70 after readings at or above it; it was **warned** when a ``predicted_low`` opened in
the 30 min before. Judgements go to InfluxDB (``alarm_quality``) and the worker's metrics:
live precision, recall, false alarms per patient-day (of CGM monitoring) and median lead.
(Deterioration alarms need outcomes the stream does not see: the simulator's ground truth.)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ..sinks.lines import escape_tag

LOW = 70.0
HORIZON_MS = 30 * 60_000
CGM_INTERVAL_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class PredictionMemory:
    """A patient's predicted lows awaiting their truth (part of the patient's state)."""

    pending: list[int] = field(default_factory=list)  # opened, not judged yet
    recent: list[int] = field(default_factory=list)  # judged in the last 30 min
    cgm_low: bool = False  # the latest CGM reading was below 70


def predicted(memory: PredictionMemory, opened_at: int) -> PredictionMemory:
    """A predicted_low alarm opened: remembered until the truth is known."""
    return PredictionMemory([*memory.pending, opened_at], list(memory.recent), memory.cgm_low)


def judge(
    memory: PredictionMemory, t: int, value: float
) -> tuple[list[dict[str, Any]], PredictionMemory]:
    """The judgements a CGM reading makes, and the memory after it (``memory`` unchanged)."""
    if not (memory.pending or memory.recent or memory.cgm_low) and value >= LOW:
        return [], memory  # most readings: nothing awaits its truth, no low begins
    pending, recent = list(memory.pending), list(memory.recent)
    judgements, low = on_cgm(pending, recent, memory.cgm_low, t, value)
    return judgements, PredictionMemory(pending, recent, low)


def on_cgm(
    predictions: list[int], recent: list[int], was_low: bool, t: int, value: float
) -> tuple[list[dict[str, Any]], bool]:
    """Judge pending predictions with a new reading; returns (judgements, is_low).
    ``predictions`` and ``recent`` are updated in place (:func:`judge` gives them copies)."""
    judgements: list[dict[str, Any]] = []
    low = value < LOW
    for predicted in list(predictions):
        if t < predicted:
            continue
        if low and t - predicted <= HORIZON_MS:
            judgements.append(
                {
                    "judged": "prediction",
                    "outcome": "hit",
                    "at": predicted,
                    "lead_min": (t - predicted) / 60_000,
                }
            )
        elif t - predicted > HORIZON_MS:
            judgements.append({"judged": "prediction", "outcome": "false", "at": predicted})
        else:
            continue
        predictions.remove(predicted)
        recent.append(predicted)
    if low and not was_low:
        warned = [p for p in recent + predictions if t - HORIZON_MS <= p <= t]
        judgements.append(
            {
                "judged": "event",
                "outcome": "warned" if warned else "missed",
                "at": t,
                "lead_min": (t - min(warned)) / 60_000 if warned else None,
            }
        )
    recent[:] = [p for p in recent if t - p <= HORIZON_MS]
    return judgements, low


def quality_line(patient_id: str, kind: str, judgement: dict[str, Any]) -> str:
    lead = judgement.get("lead_min")
    fields = f'outcome="{judgement["outcome"]}"' + (
        f",lead_min={float(lead)!r}" if lead is not None else ""
    )
    return (
        f"alarm_quality,patient_id={escape_tag(patient_id)},kind={kind},"
        f"judged={judgement['judged']} {fields} {judgement['at']}"
    )


@dataclass
class QualityStats:
    """The worker's running figures per kind (reset when the worker restarts)."""

    hits: int = 0
    false: int = 0
    warned: int = 0
    missed: int = 0
    cgm_readings: int = 0  # x 5 min = monitored time
    leads: list[float] = field(default_factory=list)

    def add(self, judgement: dict[str, Any]) -> None:
        outcome = judgement["outcome"]
        if outcome == "hit":
            self.hits += 1
        elif outcome == "false":
            self.false += 1
        elif outcome == "warned":
            self.warned += 1
            self.leads.append(float(judgement["lead_min"]))
            del self.leads[:-1000]
        else:
            self.missed += 1

    def figures(self) -> dict[str, float | None]:
        judged = self.hits + self.false
        events = self.warned + self.missed
        days = self.cgm_readings * CGM_INTERVAL_MS / 86_400_000
        return {
            "precision": self.hits / judged if judged else None,
            "recall": self.warned / events if events else None,
            "false_per_patient_day": self.false / days if days else None,
            "median_lead_min": statistics.median(self.leads) if self.leads else None,
            "predictions_judged": judged,
            "events": events,
        }
