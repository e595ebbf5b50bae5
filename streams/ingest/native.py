"""Bedside's native JSON: one observation object, or a list of them.

```json
{"patient_id": "p-001", "code": "8867-4", "value": 72, "unit": "/min",
 "effective_at": "2026-11-24T10:00:00Z", "source": "watch-42", "event_id": "optional"}
```
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..schemas.codes import CATALOGUE, CONSCIOUSNESS_ALIASES, CONSCIOUSNESS_LEVELS
from ..schemas.observation import Format, Kind, Observation
from .normalise import Measurement, json_objects, normalise, validation_problem
from .problems import DecodeResult, Reason

CONSCIOUSNESS = "67775-7"


class NativeObservation(BaseModel):
    """The documented native schema (docs/ingest.md: "Native JSON")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1, max_length=128)
    code: str = Field(min_length=1, max_length=64, description="LOINC code")
    value: float | str = Field(description="number; ACVPU letters or words for 67775-7")
    unit: str | None = Field(None, max_length=64, description="UCUM unit")
    effective_at: AwareDatetime
    source: str = Field("unknown", max_length=256)
    event_id: str | None = Field(None, min_length=1, max_length=256)
    # provenance, set when the HTTP gateway republishes a normalised observation.
    # ``received_at`` is accepted and ignored: the server owns the clock (a sender's own
    # arrival time would let it date readings years ahead and silence the patient)
    format: Format | None = None
    kind: Kind | None = None
    received_at: AwareDatetime | None = None

    @field_validator("effective_at", mode="before")
    @classmethod
    def _iso_date_and_time(cls, value: Any) -> Any:
        # pydantic reads numbers and digit strings ("2026") as Unix seconds: refuse them
        if not isinstance(value, str) or not _looks_like_date_time(value):
            msg = "effective_at must be an ISO 8601 date and time with a timezone"
            raise ValueError(msg)
        return value


def _looks_like_date_time(text: str) -> bool:
    """``YYYY-MM-DDThh:mm...``: a date and a time, never a bare number or year."""
    return len(text) >= 16 and text[4] == "-" and text[7] == "-" and text[10] in "Tt "


def consciousness_value(value: float | str) -> float | None:
    """ACVPU as the ordinal 0 (alert) .. 4 (unresponsive)."""
    if isinstance(value, str):
        text = value.strip().lower()
        level = CONSCIOUSNESS_LEVELS.get(text, CONSCIOUSNESS_ALIASES.get(text))
        return None if level is None else float(level)
    return float(value)


# the fields a device sends; anything else (the gateway's provenance fields, unknown keys)
# takes the validating path
_DEVICE_FIELDS = frozenset(
    {"patient_id", "code", "value", "unit", "effective_at", "source", "event_id"}
)
_NUMBER = (int, float)


def _lean(item: dict[str, Any], pointer: str) -> Measurement | None:
    """The common, well-formed device object checked without pydantic, or None: then the
    validating path decides (and words the problem). Stricter than the schema, never looser:
    ``tests/unit/streams/ingest/test_native_lean.py`` compares both paths."""
    if not item.keys() <= _DEVICE_FIELDS:
        return None
    pid, code = item.get("patient_id"), item.get("code")
    value: Any = item.get("value")
    unit, at = item.get("unit"), item.get("effective_at")
    source, event_id = item.get("source", "unknown"), item.get("event_id")
    if (
        type(pid) is not str
        or not 0 < len(pid) <= 128
        or not pid.isprintable()
        or type(code) is not str
        or code not in CATALOGUE
        or code == CONSCIOUSNESS
        or type(value) not in _NUMBER
        or type(unit) is not str
        or len(unit) > 64
        or type(source) is not str
        or len(source) > 256
        or not source.isprintable()
        or (event_id is not None and (type(event_id) is not str or not 0 < len(event_id) <= 256))
        or type(at) is not str
        or len(at) < 20
        or at[4] != "-"
        or at[7] != "-"
        or at[10] not in "Tt"
    ):
        return None
    try:
        effective_at = datetime.fromisoformat(at)
    except ValueError:
        return None
    if effective_at.tzinfo is None:
        return None
    return Measurement(pid, code, float(value), unit, effective_at, source, event_id, pointer)


def decode_native(
    document: Any,
    *,
    received_at: datetime,
    topic_kind: Kind | None,
    result: DecodeResult,
    lean: bool = True,
) -> None:
    """Append the observations (or problems) of a native object or list to ``result``.

    ``lean``: try the pydantic-free check of well-formed device objects first (the hot path);
    False validates everything with the schema."""
    for pointer, item in json_objects(document, result, "a native observation"):
        measurement = _lean(item, pointer) if lean else None
        if measurement is not None:
            result.add(
                normalise(
                    measurement,
                    fmt=Format.NATIVE,
                    received_at=received_at,
                    topic_kind=topic_kind,
                    checked=True,
                )
            )
            continue
        try:
            native = NativeObservation.model_validate(item)
        except ValidationError as exc:
            result.add(validation_problem(exc, pointer))
            continue
        value: float | None
        if isinstance(item.get("value"), bool):
            value = None
        elif native.code == CONSCIOUSNESS:
            value = consciousness_value(native.value)
        else:
            value = native.value if isinstance(native.value, float) else None
        if value is None:
            result.reject(Reason.SCHEMA, f"value of {native.code} must be a number", pointer)
            continue
        result.add(
            normalise(
                Measurement(
                    patient_id=native.patient_id,
                    code=native.code,
                    value=value,
                    unit=native.unit,
                    effective_at=native.effective_at,
                    source=native.source,
                    event_id=native.event_id,
                    pointer=pointer,
                ),
                fmt=native.format or Format.NATIVE,
                received_at=received_at,
                topic_kind=topic_kind,
            )
        )


def native_record(observation: Observation) -> bytes:
    """A normalised observation as the native JSON the stream decodes (with provenance).

    The offset its time was written in travels as the offset of ``effective_at`` (the native
    schema's way to say it), so decoding the record gives the same observation back."""
    document = observation.model_dump(mode="json", exclude={"utc_offset_min"})
    if observation.utc_offset_min:
        written = timezone(timedelta(minutes=observation.utc_offset_min))
        document["effective_at"] = observation.effective_at.astimezone(written).isoformat()
    return orjson.dumps(document)
