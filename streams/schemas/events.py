"""The output events Bedside reads back: what an alert or risk event must be to be used.

The alert view and the ward view read ``bedside.alerts`` and ``bedside.risk`` on every
worker. Those topics are inputs too: anything with write access can put a record there, and
a record of another version or a bug could hold anything. Each record is validated here
(strictly: no type coercion) before a view takes it; a record that does not fit is
counted, logged by its coordinates (never its payload) and skipped. Fields a view does not
read are kept as they are (forward compatible); the fields it reads have the types below.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

#: The contract version of each output topic's events, written into every event as
#: ``schema_version`` ("MAJOR.MINOR"). Within a major version changes are additive only (new
#: optional fields); anything else raises the major (docs/topics.md, docs/schemas/).
ALERT_SCHEMA_VERSION = "1.0"
RISK_SCHEMA_VERSION = "1.0"
DEAD_LETTER_SCHEMA_VERSION = "1.0"
_MAJOR_1 = r"^1\.\d+$"

PatientId = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=4000)]


LARGEST = 1e12  # beyond any clinical value or score; JSON writers refuse huge integers


def _finite(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and abs(value) <= LARGEST):
        msg = f"must be a finite number within +-{LARGEST:g}"
        raise ValueError(msg)
    return value


Number = Annotated[float, AfterValidator(_finite)]
Moment = Annotated[str, Field(min_length=10, max_length=40, pattern=r"^\d{4}-\d\d-\d\dT")]
_READ = ConfigDict(strict=True, extra="allow", frozen=True)


class AuditLink(BaseModel):
    model_config = _READ

    seq: int = Field(ge=0, le=2**53)
    prev: str = Field(max_length=128)
    hash: str = Field(max_length=128)


class AlertEvent(BaseModel):
    """An alarm transition on ``bedside.alerts`` (``streams.alerts.lifecycle``)."""

    model_config = _READ

    alert_id: str = Field(min_length=1, max_length=64)
    patient_id: PatientId
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    severity: Literal["info", "warning", "urgent", "critical"]
    opened_at: Moment
    event_time: Moment
    state: Literal["open", "acknowledged", "snoozed", "resolved"]
    transition: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")
    level: int = Field(ge=0, le=16)
    target: str = Field(max_length=64)
    reason: Text
    evidence: dict[str, Any]
    score: Number | None = None
    rule_or_model_version: str | None = Field(None, max_length=128)
    by: str | None = Field(None, max_length=200)
    minutes: int | None = Field(None, ge=0, le=100_000)
    note: Text | None = None
    audit: AuditLink | None = None
    # absent on events written before topics were versioned: the views still read them
    schema_version: str | None = Field(None, pattern=_MAJOR_1)


class ScoreEntry(BaseModel):
    """One score of a risk event (its details beside name, version and value)."""

    model_config = _READ

    name: str = Field(min_length=1, max_length=64)
    version: str | None = Field(None, max_length=128)
    value: Number | None = None
    # the details the ward view reads
    band: str | None = Field(None, max_length=16)
    missing: list[str] | None = None
    rate_mg_dl_per_min: Number | None = None
    level: str | None = Field(None, max_length=32)
    ar2_30min_min_mg_dl: Number | None = None
    ar2_version: str | None = Field(None, max_length=128)
    forecast_mg_dl: dict[str, Number] | None = None
    forecast_served_by: dict[str, str] | None = None
    threshold: Number | None = None


class RiskInputs(BaseModel):
    model_config = _READ

    latest: dict[str, Number] = Field(default_factory=dict)
    latest_at: dict[str, Annotated[int, Field(ge=0, le=2**53)]] = Field(default_factory=dict)


class RiskEvent(BaseModel):
    """A patient's scores on ``bedside.risk`` (``streams.processing.pipeline``)."""

    model_config = _READ

    patient_id: PatientId
    event_time: Moment
    scores: list[ScoreEntry] = Field(max_length=64)
    inputs: RiskInputs = Field(default_factory=RiskInputs)
    schema_version: str | None = Field(None, pattern=_MAJOR_1)


ALERT_EVENT: TypeAdapter[AlertEvent] = TypeAdapter(AlertEvent)
RISK_EVENT: TypeAdapter[RiskEvent] = TypeAdapter(RiskEvent)
