"""The one normalised observation every ingest format is turned into."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Kind(StrEnum):
    VITAL = "vital"
    GLUCOSE = "glucose"
    LAB = "lab"


class Format(StrEnum):
    NATIVE = "native"
    FHIR = "fhir"
    NIGHTSCOUT = "nightscout"


class Observation(BaseModel):
    """One measurement of one patient, in its canonical LOINC code and UCUM unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    kind: Kind
    code: str = Field(
        pattern=r"^[A-Za-z0-9.\-]{1,64}$",
        description="LOINC code (canonical: mmol/L glucose codes map to mg/dL)",
    )
    value: float
    unit: str = Field(description="canonical UCUM unit")
    effective_at: AwareDatetime = Field(description="when it was measured, UTC")
    received_at: AwareDatetime = Field(description="when Bedside received it, UTC")
    source: str = Field(
        max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$", description="device or integration id"
    )
    event_id: str = Field(min_length=1, max_length=256)
    format: Format
    utc_offset_min: int | None = Field(
        None,
        ge=-1080,
        le=1080,
        description="the offset from UTC (minutes) the event time was written in: the "
        "patient's local time of day, unless the patient settings give a zone",
    )

    @classmethod
    def checked(
        cls,
        patient_id: str,
        kind: Kind,
        code: str,
        value: float,
        unit: str,
        effective_at: datetime,
        received_at: datetime,
        source: str,
        event_id: str,
        format: Format,
        utc_offset_min: int | None = None,
    ) -> Observation:
        """An observation from values the caller has already checked against every
        constraint above (the lean native decoder does), built without validating them
        again: a third of the cost, on the ingest hot path. Equal to the validated one
        (``tests/unit/streams/test_observation.py`` holds pydantic to that)."""
        observation = cls.__new__(cls)
        _set(observation, "__dict__", {
            "patient_id": patient_id, "kind": kind, "code": code, "value": value,
            "unit": unit, "effective_at": effective_at, "received_at": received_at,
            "source": source, "event_id": event_id, "format": format,
            "utc_offset_min": utc_offset_min,
        })  # fmt: skip
        _set(observation, "__pydantic_fields_set__", set(_FIELDS))
        _set(observation, "__pydantic_extra__", None)
        _set(observation, "__pydantic_private__", None)
        return observation


# what ``model_construct`` sets, without its per-field defaults and alias handling
_set = object.__setattr__
_FIELDS = frozenset(Observation.model_fields)


def stable_event_id(
    patient_id: str, code: str, effective_at: datetime, value: float, source: str
) -> str:
    """Deterministic id for a measurement sent without one: replays map to the same id."""
    text = f"{patient_id}|{code}|{effective_at.isoformat()}|{value!r}|{source}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
