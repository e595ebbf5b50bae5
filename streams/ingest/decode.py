"""One entry point for every ingest record: size and entry limits, format sniffing, no raises."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..schemas.observation import Format, Kind
from .fhir import decode_fhir
from .native import decode_native
from .nightscout import decode_nightscout, looks_like_entry
from .problems import DecodeResult, Reason

log = logging.getLogger(__name__)


#: FHIR documents nested deeper than this are refused (``schema``): real Observations and
#: Bundles are ~10 levels deep, and a recursive extension 400 deep exhausted the validator.
MAX_FHIR_DEPTH = 64
MAX_LOGGED_FRAMES = 8


def nesting_depth(document: Any, limit: int) -> int:
    """How deep ``document`` nests (objects and lists), counting no further than ``limit``."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_record_bytes: int = 1 << 20
    max_entries: int = 1000


def sniff_format(document: Any) -> Format | None:
    """Which dialect a parsed JSON document speaks; None if it is no object or list."""
    if isinstance(document, dict) and "resourceType" in document:
        return Format.FHIR
    if looks_like_entry(document):
        return Format.NIGHTSCOUT
    if isinstance(document, (dict, list)):
        return Format.NATIVE
    return None


def decode_record(
    raw: bytes,
    *,
    received_at: datetime,
    topic_kind: Kind | None = None,
    key: bytes | None = None,
    limits: IngestLimits = IngestLimits(),
    nightscout_patient: str | None = None,
) -> DecodeResult:
    """Observations and problems of one record. Never raises: a bug becomes ``internal``.

    ``nightscout_patient`` names the patient of Nightscout entries (HTTP); on Kafka the
    record key does.
    """
    result = DecodeResult(format=None)
    try:
        _decode(raw, received_at, topic_kind, key, limits, nightscout_patient, result)
    except Exception as exc:  # noqa: BLE001 - the record goes to the dead-letter topic
        # frames only (the innermost few): an exception's message could quote patient values
        frames = "".join(traceback.format_tb(exc.__traceback__)[-MAX_LOGGED_FRAMES:])
        log.error(
            "decoder bug (%s); record dead-lettered for replay\n%s", type(exc).__name__, frames
        )
        result.observations.clear()
        result.reject(Reason.INTERNAL, f"decoder error {type(exc).__name__}; please report")
    return result


def _decode(
    raw: bytes,
    received_at: datetime,
    topic_kind: Kind | None,
    key: bytes | None,
    limits: IngestLimits,
    nightscout_patient: str | None,
    result: DecodeResult,
) -> None:
    if len(raw) > limits.max_record_bytes:
        result.reject(
            Reason.TOO_LARGE, f"record is {len(raw)} bytes; the limit is {limits.max_record_bytes}"
        )
        return
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        result.reject(Reason.MALFORMED_JSON, f"not UTF-8 JSON: {exc}")
        return
    result.format = sniff_format(document)
    if isinstance(document, list) and len(document) > limits.max_entries:
        result.reject(
            Reason.TOO_MANY_ENTRIES,
            f"list has {len(document)} items; the limit is {limits.max_entries}",
        )
        return
    if result.format is Format.FHIR and nesting_depth(document, MAX_FHIR_DEPTH) > MAX_FHIR_DEPTH:
        result.reject(Reason.SCHEMA, f"document nests deeper than {MAX_FHIR_DEPTH} levels")
        return
    if result.format is Format.FHIR:
        decode_fhir(
            document,
            received_at=received_at,
            topic_kind=topic_kind,
            max_entries=limits.max_entries,
            result=result,
        )
    elif result.format is Format.NIGHTSCOUT:
        patient = nightscout_patient or (key.decode("utf-8", "replace") if key else None)
        decode_nightscout(document, patient_id=patient, received_at=received_at, result=result)
    elif result.format is Format.NATIVE:
        decode_native(document, received_at=received_at, topic_kind=topic_kind, result=result)
    else:
        result.reject(Reason.SCHEMA, "expected a JSON object or a list of objects")
    if not result.observations and not result.problems:
        result.reject(Reason.SCHEMA, "no observation in the record (empty list?)")
