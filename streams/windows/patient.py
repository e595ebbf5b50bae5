"""``PatientWindow``: the compact per-patient state kept in the worker's table.

Plain typed Python, testable without a broker. Times are event times in epoch
milliseconds (UTC). Contents:

- CGM on a 5-minute grid for the last 4 h (48 slots; a slot keeps its latest reading);
- each vital sign for the last 24 h in a bounded buffer (oldest dropped first);
- the latest value of each lab; last-seen time per signal (code);
- a personal baseline per vital (:mod:`streams.windows.baseline`);
- the alarm lifecycle's state per kind (``streams.alerts.lifecycle``), and counters.

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

Serialised **by field name** with a format version (4): ``signals`` (CGM, vitals, labs,
last-seen times, baselines), ``alarms`` (the lifecycle's state and debounce history),
``quality`` (predicted lows awaiting their truth), ``audit`` (the alarm events' chain:
count and last link), ``personal`` (the glucose forecast's per-patient adaptation, only
while it serves) and ``counters``, so a field added later
never shifts what is already stored in tables and changelogs; a missing field takes its
default. Sample buffers are stored compactly (:mod:`streams.windows.compact`): times as
second offsets from the watermark and values as exact hundredths, delta-encoded in the
smallest integer type that holds them; the document is msgpack, zlib-compressed when that
pays (about 1.65 KB for a day of 5-minute heart rate, SpO2, respiratory rate and CGM). Formats
3 (msgpack, float32 buffers) and 2 (positional lists) are still read and migrated.
"""

from __future__ import annotations

import bisect
import functools
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..schemas.codes import CATALOGUE
from ..schemas.observation import Kind, Observation
from . import compact
from .alarm import Alarm
from .baseline import Baseline

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
CGM_SLOT_MS = 5 * MINUTE_MS
CGM_SLOTS = 48  # 4 h
CGM_CODE = "99504-3"
VITAL_HORIZON_MS = 24 * HOUR_MS
FORMAT_VERSION = 4
PREVIOUS_FORMAT = 3  # msgpack with float32 sample buffers: read (migrated), never written
LEGACY_FORMAT = 2  # positional lists: read (migrated), never written
SECOND_MS = 1000


class Applied(StrEnum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass
class PatientWindow:
    """Per-patient windows, baselines and alert memory; see the module docstring."""

    patient_id: str
    watermark: int = 0  # newest event time seen, ms
    cgm: dict[int, tuple[int, float]] = field(default_factory=dict)  # slot -> (t, mg/dL)
    vitals: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # sorted by t
    labs: dict[str, tuple[int, float]] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    alarms: dict[str, Alarm] = field(default_factory=dict)  # kind -> the alarm's state
    alarm_history: dict[str, list[int]] = field(default_factory=dict)  # kind -> debounce bits
    arrived_at: int = 0  # wall clock (ms) when the patient's latest data was processed
    # live alarm quality (streams.alerts.quality): predicted lows awaiting their truth
    predictions: list[int] = field(default_factory=list)
    recent_predictions: list[int] = field(default_factory=list)
    cgm_low: bool = False
    utc_offset_min: int | None = None  # the offset the newest CGM reading was written in
    # the patient's audit chain (streams.access.audit): events sealed so far, the last link
    audit_seq: int = 0
    audit_head: bytes = b""
    # the glucose forecast's per-patient adaptation (streams.scoring.personal), stored form;
    # empty while the serving model's gate leaves adaptation off
    personal: list[Any] = field(default_factory=list)
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

    # -- serialisation -----------------------------------------------------------------
    def _unpack_v3(self, packed: list[bytes] | None) -> list[tuple[int, float]]:
        """A format-3 sample buffer: int32 second offsets and float32 values."""
        if not packed:
            return []
        offsets, values = array("i"), array("f")
        offsets.frombytes(packed[0])
        values.frombytes(packed[1])
        return [
            (self.watermark - o * SECOND_MS, round(v, 2))
            for o, v in zip(offsets, values, strict=True)
        ]

    def to_bytes(self) -> bytes:
        """The compact stored form (one changelog record per patient per batch)."""
        pack = functools.partial(compact.pack_samples, self.watermark)
        data = {
            "format": FORMAT_VERSION,
            "patient_id": self.patient_id,
            "watermark": self.watermark,
            "signals": {
                "cgm": pack(self.cgm_series()),
                "vitals": {code: pack(samples) for code, samples in self.vitals.items()},
                "labs": {code: [t, v] for code, (t, v) in self.labs.items()},
                "last_seen": self.last_seen,
                "baselines": {
                    code: compact.pack_hours(b.hours) for code, b in self.baselines.items()
                },
                "utc_offset_min": self.utc_offset_min,
            },
            "alarms": {
                "open": {kind: alarm.to_dict() for kind, alarm in self.alarms.items()},
                "history": self.alarm_history,
            },
            "quality": {
                "predictions": self.predictions,
                "recent_predictions": self.recent_predictions,
                "cgm_low": self.cgm_low,
            },
            "audit": [self.audit_seq, self.audit_head],
            **({"personal": self.personal} if self.personal else {}),
            "counters": {
                "events": self.events,
                "duplicates": self.duplicates,
                "late": self.late,
                "arrived_at": self.arrived_at,
            },
        }
        return compact.encode_document(FORMAT_VERSION, data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PatientWindow:
        data = compact.decode_document(FORMAT_VERSION, raw)
        if isinstance(data, list) and data and data[0] == LEGACY_FORMAT:
            data = migrate_legacy(data)
        if not isinstance(data, dict) or data.get("format") not in (
            FORMAT_VERSION,
            PREVIOUS_FORMAT,
        ):
            found = data.get("format") if isinstance(data, dict) else data[:1]
            msg = f"unknown PatientWindow format {found!r}"
            raise ValueError(msg)
        window = cls(data["patient_id"], data.get("watermark", 0))
        signals = data.get("signals", {})
        unpack: Callable[[Any], list[tuple[int, float]]]
        if data["format"] == FORMAT_VERSION:
            unpack = functools.partial(compact.unpack_samples, window.watermark)
            window.baselines = {
                code: Baseline(compact.unpack_hours(b))
                for code, b in signals.get("baselines", {}).items()
            }
        else:
            unpack = window._unpack_v3
            window.baselines = {
                code: Baseline.from_list(b) for code, b in signals.get("baselines", {}).items()
            }
        window.cgm = {t // CGM_SLOT_MS: (t, v) for t, v in unpack(signals.get("cgm"))}
        window.vitals = {c: unpack(p) for c, p in signals.get("vitals", {}).items()}
        window.labs = {code: (t, v) for code, (t, v) in signals.get("labs", {}).items()}
        window.last_seen = signals.get("last_seen", {})
        window.utc_offset_min = signals.get("utc_offset_min")
        alarms = data.get("alarms", {})
        window.alarms = {k: Alarm.from_dict(a) for k, a in alarms.get("open", {}).items()}
        window.alarm_history = alarms.get("history", {})
        quality = data.get("quality", {})
        window.predictions = quality.get("predictions", [])
        window.recent_predictions = quality.get("recent_predictions", [])
        window.cgm_low = quality.get("cgm_low", False)
        window.audit_seq, window.audit_head = data.get("audit", (0, b""))
        window.personal = data.get("personal", [])
        counters = data.get("counters", {})
        window.events = counters.get("events", 0)
        window.duplicates = counters.get("duplicates", 0)
        window.late = counters.get("late", 0)
        window.arrived_at = counters.get("arrived_at", 0)
        return window


def migrate_legacy(data: list[Any]) -> dict[str, Any]:
    """Format 2 (one positional list) as the format-3 document it means."""
    (_, patient_id, watermark, cgm, vitals, labs, last_seen, baselines, alarms, history,
     (events, duplicates, late, arrived_at), (predictions, recent, cgm_low)) = data  # fmt: skip
    return {
        "format": PREVIOUS_FORMAT,
        "patient_id": patient_id,
        "watermark": watermark,
        "signals": {"cgm": cgm, "vitals": vitals, "labs": labs, "last_seen": last_seen,
                    "baselines": baselines},
        "alarms": {"open": {k: Alarm.from_list(a).to_dict() for k, a in alarms.items()},
                   "history": history},
        "quality": {"predictions": predictions, "recent_predictions": recent, "cgm_low": cgm_low},
        "counters": {"events": events, "duplicates": duplicates, "late": late,
                     "arrived_at": arrived_at},
    }  # fmt: skip
