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


def stable_event_id(
    patient_id: str, code: str, effective_at: datetime, value: float, source: str
) -> str:
    """Deterministic id for a measurement sent without one: replays map to the same id."""
    text = f"{patient_id}|{code}|{effective_at.isoformat()}|{value!r}|{source}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
