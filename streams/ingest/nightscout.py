"""Nightscout ``entries`` documents, as existing uploaders (xDrip+, Loop, AAPS...) send them.

```json
{"type": "sgv", "sgv": 142, "date": 1700000000000, "dateString": "2023-11-14T22:13:20.000Z",
 "direction": "Flat", "device": "xDrip-DexcomG6"}
```
Entries carry no patient: on Kafka the record key is the patient id; over HTTP the patient
whose Nightscout API secret was presented. ``sgv`` (sensor glucose) becomes CGM 99504-3 and
``mbg`` (meter glucose) capillary 41653-7, both in mg/dL as Nightscout stores them; other
types (``cal``, ...) are dead-lettered as unsupported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ..schemas.observation import Format, Kind
from .normalise import Measurement, json_objects, normalise
from .problems import DecodeResult, Reason

ENTRY_CODES = {"sgv": "99504-3", "mbg": "41653-7"}
ENTRY_TYPES = frozenset({"sgv", "mbg", "cal", "etc"})


def looks_like_entry(document: Any) -> bool:
    """True for a Nightscout entries object (or a list starting with one)."""
    if isinstance(document, list):
        return bool(document) and looks_like_entry(document[0])
    if not isinstance(document, dict):
        return False
    kind = document.get("type")
    return (
        (isinstance(kind, str) and kind in ENTRY_TYPES)
        or "sgv" in document
        or ("dateString" in document)
    )


def _entry_time(entry: dict[str, Any]) -> datetime | str:
    """The entry's time, or why it has none. ``date`` (epoch ms) wins over ``dateString``."""
    date = entry.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        try:
            return datetime.fromtimestamp(date / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return "date is not a valid epoch-milliseconds time"
    text = entry.get("dateString") or entry.get("sysTime")
    if isinstance(text, str):
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return "dateString is not an ISO 8601 time"
        if parsed.tzinfo is None:
            return "dateString has no timezone"
        return parsed
    return "entry has neither date (epoch ms) nor dateString"


def decode_nightscout(
    document: Any,
    *,
    patient_id: str | None,
    received_at: datetime,
    result: DecodeResult,
) -> None:
    """Append the observations (or problems) of one entry or a list of entries."""
    for pointer, entry in json_objects(document, result, "a Nightscout entry"):
        kind = entry.get("type", "sgv" if "sgv" in entry else None)
        code = ENTRY_CODES.get(kind) if isinstance(kind, str) else None
        if code is None:
            result.reject(
                Reason.UNSUPPORTED, f"Nightscout entry type {kind!r} is not glucose", pointer
            )
            continue
        value = entry.get(str(kind))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            result.reject(Reason.SCHEMA, f"{kind} must be a number (mg/dL)", pointer)
            continue
        if not patient_id:
            result.reject(
                Reason.PATIENT,
                "Nightscout entries carry no patient id: publish them keyed by patient id",
                pointer,
            )
            continue
        when = _entry_time(entry)
        if isinstance(when, str):
            result.reject(Reason.TIME, when, pointer)
            continue
        offset = entry.get("utcOffset")  # minutes: the uploader's local time of day
        if isinstance(offset, int) and not isinstance(offset, bool) and abs(offset) <= 1080:
            when = when.astimezone(timezone(timedelta(minutes=offset)))
        sender_id = entry.get("_id") or entry.get("identifier")
        device = entry.get("device")
        result.add(
            normalise(
                Measurement(
                    patient_id=patient_id,
                    code=code,
                    value=float(value),
                    unit="mg/dL",
                    effective_at=when,
                    source=device if isinstance(device, str) and device else "nightscout",
                    event_id=sender_id if isinstance(sender_id, str) and sender_id else None,
                    pointer=pointer,
                ),
                fmt=Format.NIGHTSCOUT,
                received_at=received_at,
                topic_kind=Kind.GLUCOSE,
            )
        )
