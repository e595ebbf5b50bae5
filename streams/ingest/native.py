"""Bedside's native JSON: one observation object, or a list of them.

```json
{"patient_id": "p-001", "code": "8867-4", "value": 72, "unit": "/min",
 "effective_at": "2026-11-24T10:00:00Z", "source": "watch-42", "event_id": "optional"}
```
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ..schemas.codes import CONSCIOUSNESS_ALIASES, CONSCIOUSNESS_LEVELS
from ..schemas.observation import Format, Kind
from .normalise import Measurement, json_objects, normalise, validation_problem
from .problems import DecodeResult, Reason

CONSCIOUSNESS = "67775-7"


class NativeObservation(BaseModel):
    """The documented native schema (README: "Native JSON")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1, max_length=128)
    code: str = Field(min_length=1, max_length=64, description="LOINC code")
    value: float | str = Field(description="number; ACVPU letters or words for 67775-7")
    unit: str | None = Field(None, max_length=64, description="UCUM unit")
    effective_at: AwareDatetime
    source: str = Field("unknown", max_length=256)
    event_id: str | None = Field(None, min_length=1, max_length=256)
    # provenance, set when the HTTP gateway republishes a normalised observation
    format: Format | None = None
    kind: Kind | None = None
    received_at: AwareDatetime | None = None


def consciousness_value(value: float | str) -> float | None:
    """ACVPU as the ordinal 0 (alert) .. 4 (unresponsive)."""
    if isinstance(value, str):
        text = value.strip().lower()
        level = CONSCIOUSNESS_LEVELS.get(text, CONSCIOUSNESS_ALIASES.get(text))
        return None if level is None else float(level)
    return float(value)


def decode_native(
    document: Any,
    *,
    received_at: datetime,
    topic_kind: Kind | None,
    result: DecodeResult,
) -> None:
    """Append the observations (or problems) of a native object or list to ``result``."""
    for pointer, item in json_objects(document, result, "a native observation"):
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
                received_at=native.received_at or received_at,
                topic_kind=topic_kind,
            )
        )
