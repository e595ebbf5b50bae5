"""FHIR R4 ``Observation`` and ``Bundle`` (transaction, batch, collection, searchset).

Each Observation is validated with the maintained ``fhir.resources`` models (R4B, which is
R4-compatible for Observation) and then mapped:

- code: the first LOINC coding Bedside knows, else the first LOINC coding (labs only);
- components (the blood-pressure panel 85354-9) become one observation each;
- time: effectiveDateTime, effectiveInstant or effectivePeriod.start. Date-only and
  year-month dates are accepted for labs at the start of the period (UTC) and refused (reason
  ``time``) for vitals and glucose, whose windows need the minute; a bare year is refused for
  every kind;
- value: valueQuantity (UCUM ``code`` preferred over free-text ``unit``), valueInteger, or a
  valueCodeableConcept naming an ACVPU level;
- patient: ``subject.reference`` (``Patient/<id>``, absolute URL, or a ``urn:uuid`` Patient
  entry of the same Bundle) or ``subject.identifier.value``;
- status ``entered-in-error``, ``cancelled`` or ``registered``: not ingested, dead-lettered
  with reason ``status``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.observation import Observation as FhirObservation
from pydantic import ValidationError

from ..schemas.codes import BP_PANEL, CATALOGUE, CONSCIOUSNESS_ALIASES, CONSCIOUSNESS_LEVELS
from ..schemas.observation import Format, Kind
from .normalise import Measurement, describe_errors, normalise
from .problems import DecodeResult, Problem, Reason

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
REFUSED_STATUSES = frozenset({"entered-in-error", "cancelled", "registered"})
R4_STATUSES = REFUSED_STATUSES | {"preliminary", "final", "amended", "corrected", "unknown"}
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset"})
CONTEXT_RESOURCES = frozenset({"Patient", "Device"})  # used to resolve references only


def decode_fhir(
    document: dict[str, Any],
    *,
    received_at: datetime,
    topic_kind: Kind | None,
    max_entries: int,
    result: DecodeResult,
) -> None:
    """Append the observations (or problems) of an Observation or Bundle to ``result``."""
    resource_type = document.get("resourceType")
    if resource_type == "Observation":
        _observation(document, "", {}, received_at, topic_kind, result)
    elif resource_type == "Bundle":
        _bundle(document, received_at, topic_kind, max_entries, result)
    else:
        result.reject(Reason.UNSUPPORTED, f"FHIR {resource_type!r} is not an Observation or Bundle")


def _bundle(
    bundle: dict[str, Any],
    received_at: datetime,
    topic_kind: Kind | None,
    max_entries: int,
    result: DecodeResult,
) -> None:
    bundle_type = bundle.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in BUNDLE_TYPES:
        result.reject(
            Reason.UNSUPPORTED,
            f"Bundle type {bundle.get('type')!r} is not one of {', '.join(sorted(BUNDLE_TYPES))}",
        )
        return
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        result.reject(Reason.SCHEMA, "Bundle.entry must be a list of objects", "/entry")
        return
    if len(entries) > max_entries:
        result.reject(
            Reason.TOO_MANY_ENTRIES,
            f"Bundle has {len(entries)} entries; the limit is {max_entries}",
            "/entry",
        )
        return
    patients = _bundle_patients(entries)
    found = False
    for index, entry in enumerate(entries):
        pointer = f"/entry/{index}/resource"
        resource = entry.get("resource")
        request = entry.get("request")
        method = request.get("method", "POST") if isinstance(request, dict) else "POST"
        if not isinstance(resource, dict):
            result.reject(Reason.SCHEMA, "entry has no resource", f"/entry/{index}")
            continue
        kind = resource.get("resourceType")
        if isinstance(kind, str) and kind in CONTEXT_RESOURCES:
            continue
        if kind != "Observation":
            result.reject(Reason.UNSUPPORTED, f"{kind!r} is not an Observation", pointer)
            continue
        found = True
        if method not in ("POST", "PUT"):
            result.reject(Reason.UNSUPPORTED, f"request method {method!r} is not ingested", pointer)
            continue
        first = len(result.observations)
        _observation(resource, pointer, patients, received_at, topic_kind, result)
        result.entries.append((index, first, len(result.observations)))
    if not found and not result.problems:
        result.reject(Reason.SCHEMA, "Bundle holds no Observation")


def _bundle_patients(entries: list[dict[str, Any]]) -> dict[str, str]:
    """fullUrl of each Patient entry -> its patient id (first identifier, else id)."""
    patients: dict[str, str] = {}
    for entry in entries:
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            identifiers = resource.get("identifier")
            first = identifiers[0] if isinstance(identifiers, list) and identifiers else {}
            patient = (first.get("value") if isinstance(first, dict) else None) or resource.get(
                "id"
            )
            if isinstance(entry.get("fullUrl"), str) and isinstance(patient, str):
                patients[entry["fullUrl"]] = patient
    return patients


def _patient_id(fhir: FhirObservation, patients: dict[str, str]) -> str | None:
    subject = fhir.subject
    if subject is None:
        return None
    if subject.reference:
        reference = subject.reference
        if reference in patients:
            return patients[reference]
        head, _, tail = reference.rstrip("/").rpartition("Patient/")
        if tail and "/" not in tail:
            return tail
        return None
    if subject.identifier is not None and subject.identifier.value:
        return str(subject.identifier.value)
    return None


def _effective(fhir: FhirObservation) -> datetime | date | str | None:
    if fhir.effectiveDateTime is not None:
        return fhir.effectiveDateTime
    if fhir.effectiveInstant is not None:
        return fhir.effectiveInstant
    if fhir.effectivePeriod is not None and fhir.effectivePeriod.start is not None:
        return fhir.effectivePeriod.start
    return None


def effective_time(value: datetime | date | str | None, kind: Kind) -> datetime | str:
    """The time policy: exact times as sent; date-only/partial dates for labs only."""
    if value is None:
        return "no effectiveDateTime, effectiveInstant or effectivePeriod.start"
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else "time has no timezone"
    if kind is not Kind.LAB:
        return f"date-only or partial time {str(value)!r} is too imprecise for a {kind.value}"
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    parts = [int(p) for p in value.split("-")]  # "YYYY" or "YYYY-MM"
    if len(parts) < 2:
        return f"a bare year {str(value)!r} is too imprecise, even for a lab"
    return datetime(parts[0], parts[1], 1, tzinfo=UTC)


def _pick_code(codeable: Any) -> str | None:
    """The first LOINC coding Bedside knows, else the first LOINC coding at all."""
    if codeable is None:
        return None
    codings = [c for c in (codeable.coding or []) if c.system == LOINC and c.code]
    for coding in codings:
        if coding.code in CATALOGUE or coding.code == BP_PANEL:
            return str(coding.code)
    return str(codings[0].code) if codings else None


def _value(holder: Any) -> tuple[float, str | None] | Problem:
    """(value, unit) of an Observation or component, or why there is none."""
    quantity = holder.valueQuantity
    if quantity is not None:
        if quantity.value is None:
            return Problem(Reason.NO_VALUE, "valueQuantity has no value")
        unit = quantity.code if quantity.code and quantity.system in (UCUM, None) else None
        return float(Decimal(quantity.value)), unit or quantity.unit or quantity.code
    if holder.valueInteger is not None:
        return float(holder.valueInteger), None
    concept = holder.valueCodeableConcept
    if concept is not None:
        words = [concept.text] + [c.display or c.code for c in concept.coding or []]
        for word in words:
            if isinstance(word, str):
                level = CONSCIOUSNESS_LEVELS.get(
                    word.strip().lower(), CONSCIOUSNESS_ALIASES.get(word.strip().lower())
                )
                if level is not None:
                    return float(level), "{score}"
        return Problem(Reason.SCHEMA, "valueCodeableConcept is not an ACVPU level")
    absent = holder.dataAbsentReason
    if absent is not None:
        why = absent.text or next((c.code for c in absent.coding or []), "unknown")
        return Problem(Reason.NO_VALUE, f"no value (dataAbsentReason: {why})")
    return Problem(Reason.NO_VALUE, "no valueQuantity, valueInteger or valueCodeableConcept")


def _observation(
    resource: dict[str, Any],
    pointer: str,
    patients: dict[str, str],
    received_at: datetime,
    topic_kind: Kind | None,
    result: DecodeResult,
) -> None:
    try:
        fhir = FhirObservation.model_validate(resource)
    except ValidationError as exc:
        result.reject(Reason.SCHEMA, describe_errors(exc), pointer)
        return
    if fhir.status not in R4_STATUSES:
        result.reject(
            Reason.SCHEMA, f"status {fhir.status!r} is not an R4 ObservationStatus", pointer
        )
        return
    if fhir.status in REFUSED_STATUSES:
        result.reject(Reason.STATUS, f"status is {fhir.status}: not ingested", pointer)
        return
    patient = _patient_id(fhir, patients)
    if not patient:
        result.reject(Reason.PATIENT, "subject is not a Patient reference or identifier", pointer)
        return
    code = _pick_code(fhir.code)
    if code is None:
        result.reject(Reason.UNKNOWN_CODE, "Observation.code has no LOINC coding", pointer)
        return
    source = (
        (fhir.device.reference if fhir.device is not None else None)
        or (fhir.meta.source if fhir.meta is not None else None)
        or "fhir"
    )
    sender_id = fhir.id or next((i.value for i in fhir.identifier or [] if i.value), None)
    parts: list[tuple[str, Any, str]] = []
    if fhir.component and (code == BP_PANEL or not (fhir.valueQuantity or fhir.valueInteger)):
        for index, component in enumerate(fhir.component):
            component_code = _pick_code(component.code)
            where = f"{pointer}/component/{index}"
            if component_code is None:
                result.reject(Reason.UNKNOWN_CODE, "component has no LOINC coding", where)
                continue
            parts.append((component_code, component, where))
    else:
        parts.append((code, fhir, pointer))
    when_raw = _effective(fhir)
    for part_code, holder, where in parts:
        spec = CATALOGUE.get(part_code)
        kind = spec.kind if spec is not None else Kind.LAB
        when = effective_time(when_raw, kind)
        if isinstance(when, str):
            result.reject(Reason.TIME, when, where)
            continue
        value = _value(holder)
        if isinstance(value, Problem):
            result.reject(value.reason, value.message, where)
            continue
        event_id = None
        if sender_id:
            event_id = (
                sender_id if len(parts) == 1 and holder is fhir else f"{sender_id}/{part_code}"
            )
        result.add(
            normalise(
                Measurement(
                    patient_id=patient,
                    code=part_code,
                    value=value[0],
                    unit=value[1],
                    effective_at=when,
                    source=str(source),
                    event_id=event_id,
                    pointer=where,
                ),
                fmt=Format.FHIR,
                received_at=received_at,
                topic_kind=topic_kind,
            )
        )
