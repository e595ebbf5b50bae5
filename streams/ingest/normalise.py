"""The checks every format shares: known code, unit conversion, plausibility, event id."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError

from ..schemas.codes import CATALOGUE, CodeSpec, ucum
from ..schemas.observation import Format, Kind, Observation, stable_event_id
from .problems import DecodeResult, Problem, Reason


def json_objects(
    document: Any, result: DecodeResult, what: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON pointer, object) for a single object or each item of a list; others rejected."""
    items = document if isinstance(document, list) else [document]
    for index, item in enumerate(items):
        pointer = f"/{index}" if isinstance(document, list) else ""
        if isinstance(item, dict):
            yield pointer, item
        else:
            result.reject(Reason.SCHEMA, f"{what} must be a JSON object", pointer)


#: Measurements dated further ahead of their arrival than this are refused (reason ``time``).
MAX_FUTURE = timedelta(minutes=5)
#: Measurements dated before this are refused (reason ``time``): no device of a patient
#: monitored today reports them, and every time path (window offsets, series, ISO text) is
#: sized for event times between this and arrival + ``MAX_FUTURE``.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_OFFSET_MIN = 1080  # ISO 8601's widest offset, +-18:00


def time_problem(effective_at: datetime, received_at: datetime) -> str | None:
    """Why an event time is refused, or None. ``received_at`` is the server's clock."""
    if effective_at.tzinfo is None:
        return "time has no timezone (clinical times must be aware)"
    if effective_at < EARLIEST:
        return f"time is before {EARLIEST.date().isoformat()} (device clock not set?)"
    if effective_at > received_at + MAX_FUTURE:
        return f"time is more than {MAX_FUTURE} in the future (device clock?)"
    return None


class Measurement(NamedTuple):
    """One value as a decoder found it, before normalisation (a tuple: built per value on
    the ingest hot path, three times cheaper than a frozen dataclass)."""

    patient_id: str
    code: str
    value: float
    unit: str | None
    effective_at: datetime
    source: str
    event_id: str | None
    pointer: str = ""


def normalise(
    m: Measurement,
    *,
    fmt: Format,
    received_at: datetime,
    topic_kind: Kind | None,
    checked: bool = False,
) -> Observation | Problem:
    """An :class:`Observation` in canonical code and unit, or the problem that prevents it.

    Codes outside the catalogue pass through (with their unit as sent) only as labs,
    i.e. on the labs topic or, over HTTP, when no topic is implied.
    ``checked``: the decoder checked the measurement's patient id, source and event id
    against the Observation's constraints (``native._lean``), which are then not validated
    again.
    """
    if (
        not isinstance(m.value, (int, float))
        or isinstance(m.value, bool)
        or not math.isfinite(m.value)
    ):
        return Problem(Reason.IMPLAUSIBLE, f"value for {m.code} is not a finite number", m.pointer)
    refused = time_problem(m.effective_at, received_at)
    if refused is not None:
        return Problem(Reason.TIME, refused, m.pointer)
    canonical = _canonical(m, topic_kind)
    if isinstance(canonical, Problem):
        return canonical
    code, kind, value, unit, spec = canonical
    written = m.effective_at.utcoffset()
    offset = None if written is None else int(written.total_seconds()) // 60
    if offset is not None and abs(offset) > MAX_OFFSET_MIN:
        offset = None  # no real zone is that far from UTC: the local time of day is unknown
    effective_at = m.effective_at.astimezone(UTC)
    event_id = m.event_id or stable_event_id(m.patient_id, code, effective_at, value, m.source)
    if checked and spec is not None and received_at.tzinfo is not None:
        # catalogue codes and units, a finite float, aware times: nothing left to validate
        return Observation.checked(
            m.patient_id, kind, code, value, unit, effective_at, received_at, m.source,
            event_id, fmt, offset,
        )  # fmt: skip
    try:
        return Observation(
            patient_id=m.patient_id,
            kind=kind,
            code=code,
            value=value,
            unit=unit,
            effective_at=effective_at,
            received_at=received_at,
            source=m.source,
            event_id=event_id,
            format=fmt,
            utc_offset_min=offset,
        )
    except ValidationError as exc:
        return validation_problem(exc, m.pointer)


def _canonical(
    m: Measurement, topic_kind: Kind | None
) -> tuple[str, Kind, float, str, CodeSpec | None] | Problem:
    """(code, kind, value, unit, catalogue entry) in canonical terms, or the problem."""
    spec = CATALOGUE.get(m.code)
    unit = ucum(m.unit) if m.unit else None
    if spec is None:
        if topic_kind not in (Kind.LAB, None):
            return Problem(
                Reason.UNKNOWN_CODE,
                f"LOINC {m.code} is not a known {topic_kind.value} code; send labs to the labs "
                "topic",
                m.pointer,
            )
        if not unit:
            return Problem(Reason.UNIT, f"LOINC {m.code} has no unit", m.pointer)
        return m.code, Kind.LAB, float(m.value), unit, None
    else:
        if unit is None:
            if spec.unit != "{score}":
                return Problem(
                    Reason.UNIT, f"{spec.name} ({m.code}) needs a unit: {spec.unit}", m.pointer
                )
            unit = spec.unit
        converted = spec.convert(float(m.value), unit)
        if converted is None:
            accepted = ", ".join([spec.unit, *spec.units])
            return Problem(
                Reason.UNIT,
                f"{spec.name} ({m.code}) in {unit!r} cannot be converted; accepted: {accepted}",
                m.pointer,
            )
        if (spec.low is not None and converted < spec.low) or (
            spec.high is not None and converted > spec.high
        ):
            return Problem(
                Reason.IMPLAUSIBLE,
                f"{spec.name} {converted:g} {spec.unit} is outside the plausible range "
                f"{spec.low:g}-{spec.high:g}",
                m.pointer,
            )
        return spec.canonical_code or spec.code, spec.kind, converted, spec.unit, spec


def validation_problem(exc: ValidationError, pointer: str) -> Problem:
    """A validation failure as a problem: ``time`` or ``patient`` when only that field is bad."""
    fields = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    reason = {
        frozenset({"effective_at"}): Reason.TIME,
        frozenset({"patient_id"}): Reason.PATIENT,
    }.get(frozenset(fields), Reason.SCHEMA)
    return Problem(reason, describe_errors(exc), pointer)


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """Pydantic errors as one readable line: field paths and messages, never input values."""
    parts = [
        f"{'.'.join(map(str, err['loc'])) or 'document'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
