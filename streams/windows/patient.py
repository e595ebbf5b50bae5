"""``PatientWindow``: one patient's signals, as the rules and the models read them.

Plain typed Python, testable without a broker. Times are event times in epoch
milliseconds (UTC). Contents:

- CGM on a 5-minute grid for the last 4 h (48 slots; a slot keeps its latest reading);
- each vital sign for the last 24 h in a bounded buffer (oldest dropped first);
- the latest value of each lab; last-seen time per signal (code);
- a personal baseline per vital (:mod:`streams.windows.baseline`), and counters.

The window is one part of a patient's state; the alarms, the audit chain and the model's
adaptation are the others (:mod:`streams.processing.state`, stored by
:mod:`streams.processing.codec`).

Event-time policy, per signal (code): an observation no older than ``allowed lateness``
behind the newest event time of its own signal is inserted in order; an older one is
*late*: not inserted into the window (which would rewrite scores already published) but
still written to InfluxDB and counted in ``late``. Lateness is per signal, not per patient:
a backlog in which one topic runs hours ahead of another (a burst, a consumer catching up)
delays nothing into lateness, and each signal's buffer is pruned against its own newest
reading. The watermark (the newest event time of any signal) is the patient's clock. A
duplicate — the same signal (code) at the same event time, which a resent ``event_id``
always is — changes nothing; so the window after any arrival order of the same events
(within the lateness) is the same.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..schemas.codes import CATALOGUE
from ..schemas.observation import Kind, Observation
from .baseline import Baseline

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
CGM_SLOT_MS = 5 * MINUTE_MS
CGM_SLOTS = 48  # 4 h
CGM_CODE = "99504-3"
VITAL_HORIZON_MS = 24 * HOUR_MS
SECOND_MS = 1000


class Applied(StrEnum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass
class PatientWindow:
    """One patient's signals, baselines and counters; see the module docstring."""

    patient_id: str
    watermark: int = 0  # newest event time seen, ms
    cgm: dict[int, tuple[int, float]] = field(default_factory=dict)  # slot -> (t, mg/dL)
    vitals: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # sorted by t
    labs: dict[str, tuple[int, float]] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    utc_offset_min: int | None = None  # the offset the newest CGM reading was written in
    events: int = 0  # observations inserted
    duplicates: int = 0
    late: int = 0

    # -- updates ---------------------------------------------------------------------
    def apply(
        self, observation: Observation, *, allowed_lateness_ms: int, max_vital_samples: int
    ) -> Applied:
        """Insert one observation in event-time order (or count it as duplicate/late)."""
        t = int(observation.effective_at.timestamp() * SECOND_MS)
        applied = self.apply_value(
            observation.code,
            observation.kind,
            t,
            float(observation.value),
            allowed_lateness_ms=allowed_lateness_ms,
            max_vital_samples=max_vital_samples,
        )
        if applied is Applied.INSERTED and observation.code == CGM_CODE:
            self.note_offset(t, observation.utc_offset_min)
        return applied

    def note_offset(self, t_ms: int, offset_min: int | None) -> None:
        """Keep the offset the newest CGM reading was written in (the local time of day)."""
        if offset_min is not None and t_ms >= self.last_seen.get(CGM_CODE, 0):
            self.utc_offset_min = offset_min

    def apply_value(
        self,
        code: str,
        kind: Kind,
        t_ms: int,
        value: float,
        *,
        allowed_lateness_ms: int,
        max_vital_samples: int,
    ) -> Applied:
        """``apply`` for a bare (code, kind, time, value): the dataset builders' entry."""
        # whole seconds: the resolution the window keeps (and serialises)
        t = t_ms // SECOND_MS * SECOND_MS
        newest = self.last_seen.get(code)
        if newest is not None and t < newest - allowed_lateness_ms:
            self.late += 1
            return Applied.LATE
        # two decimals: the precision kept (and serialised as float32) for every signal
        value = round(value, 2)
        if kind is Kind.VITAL:
            samples = self.vitals.setdefault(code, [])
            index = bisect.bisect_left(samples, (t, float("-inf")))
            if index < len(samples) and samples[index][0] == t:
                return self._duplicate()
            samples.insert(index, (t, value))
            if len(samples) > max_vital_samples:
                del samples[: len(samples) - max_vital_samples]
            horizon = samples[-1][0] - VITAL_HORIZON_MS
            if samples[0][0] < horizon:  # each signal against its own newest reading
                del samples[: bisect.bisect_left(samples, (horizon, float("-inf")))]
            self.baselines.setdefault(code, Baseline()).add(t, value)
        elif code == CGM_CODE:
            slot = t // CGM_SLOT_MS
            current = self.cgm.get(slot)
            if current is not None and current[0] == t:
                return self._duplicate()
            if current is None or t > current[0]:  # a slot keeps its latest reading
                self.cgm[slot] = (t, value)
            if newest is None or t > newest:
                self._prune_cgm(slot)
        else:  # labs and non-CGM glucose: the latest value
            current = self.labs.get(code)
            if current is not None and current[0] == t:
                return self._duplicate()
            if current is None or t > current[0]:
                self.labs[code] = (t, value)
        self.events += 1
        self.last_seen[code] = max(self.last_seen.get(code, 0), t)
        if t > self.watermark:
            self.watermark = t
            self._prune(t - allowed_lateness_ms)
        return Applied.INSERTED

    def _duplicate(self) -> Applied:
        self.duplicates += 1
        return Applied.DUPLICATE

    def _prune_cgm(self, newest_slot: int) -> None:
        if self.cgm and (len(self.cgm) > CGM_SLOTS or min(self.cgm) <= newest_slot - CGM_SLOTS):
            for slot in [s for s in self.cgm if s <= newest_slot - CGM_SLOTS]:
                del self.cgm[slot]

    def _prune(self, clock: int) -> None:
        """Drop what fell out of every window even for a signal that lags the patient's
        newest event time by the whole allowed lateness (``clock``)."""
        if self.last_seen.get(CGM_CODE, clock) < clock:  # else its own prune went further
            self._prune_cgm(clock // CGM_SLOT_MS)
        horizon = clock - VITAL_HORIZON_MS
        for samples in self.vitals.values():
            if samples and samples[0][0] < horizon:
                del samples[: bisect.bisect_left(samples, (horizon, float("-inf")))]

    # -- queries ---------------------------------------------------------------------
    def cgm_series(self) -> list[tuple[int, float]]:
        """CGM readings of the last 4 h, oldest first."""
        return [self.cgm[slot] for slot in sorted(self.cgm)]

    def recent_cgm(self, span_ms: int) -> list[tuple[int, float]]:
        """CGM readings no older than ``span_ms`` before the newest one, oldest first."""
        if not self.cgm:
            return []
        newest = max(self.cgm)
        latest = self.cgm[newest][0]
        found = (
            self.cgm.get(slot) for slot in range(newest - span_ms // CGM_SLOT_MS - 1, newest + 1)
        )
        return [r for r in found if r is not None and latest - r[0] <= span_ms]

    def latest_vital(self, code: str, *, max_age_ms: int, now: int) -> tuple[int, float] | None:
        samples = self.vitals.get(code)
        if not samples or now - samples[-1][0] > max_age_ms:
            return None
        return samples[-1]

    def deviation(self, code: str, value: float) -> float | None:
        """Robust z-score of ``value`` against the patient's own baseline for ``code``."""
        baseline = self.baselines.get(code)
        return None if baseline is None else baseline.deviation(value)

    def summary(self) -> dict[str, Any]:
        """Counts per signal and the latest values (for risk events and the API)."""
        newest = {code: samples[-1] for code, samples in self.vitals.items() if samples}
        newest.update(self.labs)
        cgm = self.cgm_series()
        if cgm:
            newest[CGM_CODE] = cgm[-1]
        latest = {code: value for code, (_, value) in newest.items()}
        return {
            "watermark_ms": self.watermark,
            "events": self.events,
            "duplicates": self.duplicates,
            "late": self.late,
            "cgm_readings": len(cgm),
            "vital_samples": {code: len(s) for code, s in self.vitals.items()},
            "latest": {
                f"{CATALOGUE[c].name if c in CATALOGUE else c}": v for c, v in latest.items()
            },
            "latest_at": {  # the event time (ms) of each latest value
                f"{CATALOGUE[c].name if c in CATALOGUE else c}": t for c, (t, _) in newest.items()
            },
        }
