"""Why a record (or part of it) was not ingested, and the dead-letter record that says so."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from ..schemas.observation import Format, Observation


class Reason(StrEnum):
    """Dead-letter reason codes (README: "Dead-letter reasons")."""

    MALFORMED_JSON = "malformed_json"  # not UTF-8 JSON
    TOO_LARGE = "too_large"  # record over the size limit
    TOO_MANY_ENTRIES = "too_many_entries"  # Bundle or list over the entry limit
    SCHEMA = "schema"  # JSON, but not a valid document of its format
    UNSUPPORTED = "unsupported"  # valid, but a type Bedside does not ingest
    UNKNOWN_CODE = "unknown_code"  # no code Bedside knows for this topic
    UNIT = "unit"  # unit missing or not convertible to the canonical one
    IMPLAUSIBLE = "implausible"  # outside the physiological range of its code
    STATUS = "status"  # FHIR status entered-in-error / cancelled / registered
    TIME = "time"  # time missing, without timezone, or too imprecise for its kind
    NO_VALUE = "no_value"  # no value (e.g. FHIR dataAbsentReason)
    PATIENT = "patient"  # no patient id, or it differs from the record key
    INTERNAL = "internal"  # a bug in Bedside: the record is kept for replay


@dataclass(frozen=True, slots=True)
class Problem:
    reason: Reason
    message: str
    pointer: str = ""  # JSON pointer to the offending part, "" for the whole record


@dataclass(slots=True)
class DecodeResult:
    """What one record turned into."""

    format: Format | None
    observations: list[Observation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def reject(self, reason: Reason, message: str, pointer: str = "") -> None:
        self.problems.append(Problem(reason, message, pointer))

    def add(self, outcome: Observation | Problem) -> None:
        if isinstance(outcome, Problem):
            self.problems.append(outcome)
        else:
            self.observations.append(outcome)


class ProblemRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    reason: Reason
    message: str
    pointer: str = ""


class DeadLetter(BaseModel):
    """A record on the dead-letter topic: enough to understand and replay what failed."""

    model_config = ConfigDict(frozen=True)

    reason: Reason  # the first problem's reason
    message: str  # the first problem's message
    problems: list[ProblemRecord]
    format: Format | None
    source_topic: str
    partition: int | None
    offset: int | None
    key_b64: str | None
    original_b64: str
    original_bytes: int
    accepted_observations: int  # how many observations the same record still yielded
    received_at: AwareDatetime

    @classmethod
    def build(
        cls,
        result: DecodeResult,
        original: bytes,
        *,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        received_at: datetime,
    ) -> DeadLetter:
        first = result.problems[0]
        return cls(
            reason=first.reason,
            message=first.message,
            problems=[
                ProblemRecord(reason=p.reason, message=p.message, pointer=p.pointer)
                for p in result.problems
            ],
            format=result.format,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            original_b64=base64.b64encode(original).decode(),
            original_bytes=len(original),
            accepted_observations=len(result.observations),
            received_at=received_at,
        )
