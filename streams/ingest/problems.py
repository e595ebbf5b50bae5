"""Why a record (or part of it) was not ingested, and the dead-letter record that says so."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from ..schemas.events import DEAD_LETTER_SCHEMA_VERSION
from ..schemas.observation import Format, Observation


class Reason(StrEnum):
    """Dead-letter reason codes (docs/ingest.md: "Dead-letter records")."""

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
    PROCESSING = "processing"  # decoded, but applying it to the patient failed (contained)
    STATE = "state"  # a patient's stored state could not be loaded: quarantined, reset
    SERIES_REFUSED = "series_refused"  # points the time-series database refused for good
    UNAUTHENTICATED = "unauthenticated"  # an alert action without the gateway's signature
    REPLAYED = "replayed"  # a signed alert action too old, or seen before for its alarm


#: The most original bytes a dead letter carries (base64 adds a third): with the key, the
#: problems and the envelope it stays far below the producer's 1 MiB request limit. A longer
#: original is truncated; ``original_bytes`` and ``original_sha256`` still describe all of it.
MAX_ORIGINAL_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
MAX_PROBLEMS = 100  # the first ones; ``problems_total`` counts all


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
    # a FHIR Bundle's entries: (entry index, first, end) of the observations each gave
    entries: list[tuple[int, int, int]] = field(default_factory=list)

    @classmethod
    def refused(cls, reason: Reason, message: str) -> DecodeResult:
        """A result that is one problem with the whole record."""
        result = cls(format=None)
        result.reject(reason, message)
        return result

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
    original_sha256: str
    original_truncated: bool  # original_b64 holds only the first MAX_ORIGINAL_BYTES
    problems_total: int
    accepted_observations: int  # how many observations the same record still yielded
    received_at: AwareDatetime
    schema_version: str = DEAD_LETTER_SCHEMA_VERSION

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
            message=first.message[:1000],
            problems=[
                ProblemRecord(reason=p.reason, message=p.message[:1000], pointer=p.pointer[:200])
                for p in result.problems[:MAX_PROBLEMS]
            ],
            format=result.format,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key[:MAX_KEY_BYTES]).decode() if key is not None else None,
            original_b64=base64.b64encode(original[:MAX_ORIGINAL_BYTES]).decode(),
            original_bytes=len(original),
            original_sha256=hashlib.sha256(original).hexdigest(),
            original_truncated=len(original) > MAX_ORIGINAL_BYTES,
            problems_total=len(result.problems),
            accepted_observations=len(result.observations),
            received_at=received_at,
        )
