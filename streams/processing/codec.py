"""How a :class:`~streams.processing.state.PatientState` is stored, and what older stores
are read as.

Serialised **by field name** with a format version (4): ``signals`` (CGM, vitals, labs,
last-seen times, baselines, the UTC offset), ``alarms`` (the lifecycle's state and
debounce history), ``quality`` (predicted lows awaiting their truth), ``audit`` (the alarm
events' chain: count and last link), ``personal`` (the glucose forecast's per-patient
adaptation, only while it serves) and ``counters``, so a field added later never shifts
what is already stored in tables and changelogs; a missing field takes its default. Sample
buffers are stored compactly (:mod:`streams.windows.compact`): times as second offsets from
the watermark and values as exact hundredths, delta-encoded in the smallest integer type
that holds them; the document is msgpack, zlib-compressed when that pays (about 1.65 KB
for a day of 5-minute heart rate, SpO2, respiratory rate and CGM). Formats 3 (msgpack,
float32 buffers) and 2 (positional lists) are still read and migrated; the fixtures of
``tests/unit/streams/windows/test_state_format.py`` were written by those formats' code.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Callable
from typing import Any

from ..access.audit import AuditHead
from ..alerts.alarm import Alarm
from ..alerts.lifecycle import Lifecycle
from ..alerts.quality import PredictionMemory
from ..windows import compact
from ..windows.baseline import Baseline
from ..windows.patient import CGM_SLOT_MS, SECOND_MS, PatientWindow
from .state import PatientState

FORMAT_VERSION = 4
PREVIOUS_FORMAT = 3  # msgpack with float32 sample buffers: read (migrated), never written
LEGACY_FORMAT = 2  # positional lists: read (migrated), never written


def encode(state: PatientState) -> bytes:
    """The compact stored form (one changelog record per patient per batch)."""
    window = state.window
    pack = functools.partial(compact.pack_samples, window.watermark)
    data = {
        "format": FORMAT_VERSION,
        "patient_id": window.patient_id,
        "watermark": window.watermark,
        "signals": {
            "cgm": pack(window.cgm_series()),
            "vitals": {code: pack(samples) for code, samples in window.vitals.items()},
            "labs": {code: [t, v] for code, (t, v) in window.labs.items()},
            "last_seen": window.last_seen,
            "baselines": {
                code: compact.pack_hours(b.hours) for code, b in window.baselines.items()
            },
            "utc_offset_min": window.utc_offset_min,
        },
        "alarms": {
            "open": {kind: alarm.to_dict() for kind, alarm in state.alarms.alarms.items()},
            "history": state.alarms.history,
        },
        "quality": {
            "predictions": state.predictions.pending,
            "recent_predictions": state.predictions.recent,
            "cgm_low": state.predictions.cgm_low,
        },
        "audit": [state.audit.seq, state.audit.head],
        **({"personal": state.personal} if state.personal else {}),
        "counters": {
            "events": window.events,
            "duplicates": window.duplicates,
            "late": window.late,
            "arrived_at": state.arrived_at,
        },
    }
    return compact.encode_document(FORMAT_VERSION, data)


def decode(raw: bytes) -> PatientState:
    """A stored state of format 4, 3 or 2 (raises ValueError on any other)."""
    data = compact.decode_document(FORMAT_VERSION, raw)
    if isinstance(data, list) and data and data[0] == LEGACY_FORMAT:
        data = migrate_legacy(data)
    if not isinstance(data, dict) or data.get("format") not in (FORMAT_VERSION, PREVIOUS_FORMAT):
        found = data.get("format") if isinstance(data, dict) else data[:1]
        msg = f"unknown patient state format {found!r}"
        raise ValueError(msg)
    window = _signals(data)
    alarms = data.get("alarms", {})
    quality = data.get("quality", {})
    seq, head = data.get("audit", (0, b""))
    counters = data.get("counters", {})
    return PatientState(
        window,
        Lifecycle(
            window.patient_id,
            {k: Alarm.from_dict(a) for k, a in alarms.get("open", {}).items()},
            alarms.get("history", {}),
        ),
        PredictionMemory(
            quality.get("predictions", []),
            quality.get("recent_predictions", []),
            quality.get("cgm_low", False),
        ),
        AuditHead(seq, head),
        data.get("personal", []),
        counters.get("arrived_at", 0),
    )


def load(stored: bytes | None) -> PatientState | None:
    """A stored state, or None for a patient seen for the first time (may raise)."""
    return decode(stored) if stored else None


def _signals(data: dict[str, Any]) -> PatientWindow:
    window = PatientWindow(data["patient_id"], data.get("watermark", 0))
    signals = data.get("signals", {})
    unpack: Callable[[Any], list[tuple[int, float]]]
    if data["format"] == FORMAT_VERSION:
        unpack = functools.partial(compact.unpack_samples, window.watermark)
        window.baselines = {
            code: Baseline(compact.unpack_hours(b))
            for code, b in signals.get("baselines", {}).items()
        }
    else:
        unpack = functools.partial(_unpack_v3, window.watermark)
        window.baselines = {
            code: Baseline.from_list(b) for code, b in signals.get("baselines", {}).items()
        }
    window.cgm = {t // CGM_SLOT_MS: (t, v) for t, v in unpack(signals.get("cgm"))}
    window.vitals = {c: unpack(p) for c, p in signals.get("vitals", {}).items()}
    window.labs = {code: (t, v) for code, (t, v) in signals.get("labs", {}).items()}
    window.last_seen = signals.get("last_seen", {})
    window.utc_offset_min = signals.get("utc_offset_min")
    counters = data.get("counters", {})
    window.events = counters.get("events", 0)
    window.duplicates = counters.get("duplicates", 0)
    window.late = counters.get("late", 0)
    return window


def _unpack_v3(watermark: int, packed: list[bytes] | None) -> list[tuple[int, float]]:
    """A format-3 sample buffer: int32 second offsets and float32 values."""
    if not packed:
        return []
    offsets, values = array("i"), array("f")
    offsets.frombytes(packed[0])
    values.frombytes(packed[1])
    return [(watermark - o * SECOND_MS, round(v, 2)) for o, v in zip(offsets, values, strict=True)]


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
