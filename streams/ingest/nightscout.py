"""Nightscout ``entries`` documents, as existing uploaders (xDrip+, Loop, AAPS...) send them.

```json
{"type": "sgv", "sgv": 142, "date": 1700000000000, "dateString": "2023-11-14T22:13:20.000Z",
 "direction": "Flat", "device": "xDrip-DexcomG6"}
```
Entries carry no patient: on Kafka the record key is the patient id; over HTTP the patient
whose Nightscout API secret was presented. ``sgv`` (sensor glucose) becomes CGM 99504-3 and
``mbg`` (meter glucose) capillary 41653-7, both in mg/dL as Nightscout stores them; other
types (``cal``, ...) are dead-lettered as unsupported.

``treatments`` (``POST /api/v1/treatments``: xDrip+, Loop, AndroidAPS) carry what the
patient ate and the insulin given: ``carbs`` (g) becomes LOINC 9059-7 (carbohydrate intake)
and ``insulin`` (units) Bedside's ``insulin-given``, both kept as the latest value of their
code. A treatment with neither (a note, a temporary basal rate, a sensor start) is
acknowledged and not kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ..schemas.codes import CARBS_CODE, INSULIN_CODE
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


#: treatment field -> (code, unit)
TREATMENT_FIELDS = {"insulin": (INSULIN_CODE, "[IU]"), "carbs": (CARBS_CODE, "g")}


def _treatment_time(treatment: dict[str, Any]) -> datetime | str:
    """``created_at`` (ISO 8601), else ``date`` or ``mills`` (epoch ms)."""
    text = treatment.get("created_at")
    if isinstance(text, str):
        return _entry_time({"dateString": text})
    for name in ("date", "mills"):
        if name in treatment:
            return _entry_time({"date": treatment[name]})
    return "treatment has neither created_at nor date (epoch ms)"


def decode_treatments(
    document: Any, *, patient_id: str, received_at: datetime, result: DecodeResult
) -> int:
    """Append the observations (or problems) of Nightscout treatments; returns how many
    treatments held nothing Bedside keeps (acknowledged, not kept)."""
    skipped = 0
    for pointer, treatment in json_objects(document, result, "a Nightscout treatment"):
        given = {k: treatment.get(k) for k in TREATMENT_FIELDS if treatment.get(k) is not None}
        if not given:
            skipped += 1
            continue
        when = _treatment_time(treatment)
        if isinstance(when, str):
            result.reject(Reason.TIME, when, pointer)
            continue
        sender_id = treatment.get("_id") or treatment.get("identifier")
        sender_id = sender_id if isinstance(sender_id, str) and sender_id else None
        entered = treatment.get("enteredBy") or treatment.get("device")
        for name, value in given.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                result.reject(Reason.SCHEMA, f"{name} must be a number", f"{pointer}/{name}")
                continue
            code, unit = TREATMENT_FIELDS[name]
            measurement = Measurement(
                patient_id=patient_id,
                code=code,
                value=float(value),
                unit=unit,
                effective_at=when,
                source=entered if isinstance(entered, str) and entered else "nightscout",
                event_id=f"{sender_id}-{name}"
                if isinstance(sender_id, str) and sender_id
                else None,
                pointer=f"{pointer}/{name}",
            )
            result.add(
                normalise(
                    measurement, fmt=Format.NIGHTSCOUT, received_at=received_at, topic_kind=Kind.LAB
                )
            )
    return skipped
