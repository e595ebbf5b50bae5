"""The FHIR REST answers of the gateway, as FHIR R4 clients expect them.

- a create (``POST /fhir/Observation``) answers **201** with ``Location:
  [base]/Observation/{id}/_history/1`` and the resource as stored (its ``id`` and ``meta``);
- a Bundle (``POST /fhir``) answers **200** with a ``transaction-response`` (for a
  ``transaction``) or ``batch-response`` Bundle: one entry per entry sent, in order, each
  with its status and, for an Observation, its location. Bedside takes a Bundle whole or not
  at all (a refusal is one ``OperationOutcome``, nothing published), a batch included;
- ``GET /fhir/metadata``: the CapabilityStatement of what is supported.

An Observation's ``id`` is stable for the record: the event id it was published under (the
sender's identifier, else a hash of patient, code, time, value and source; under
pseudonymised ids, the keyed one), or a hash of it where it is not a valid FHIR id. A
Bundle entry that is context only (a ``Patient`` named by the Observations) is not stored
and answers ``200 OK``. Bedside does not serve reads of Observations (``GET
/fhir/Observation/{id}``): the time series are read from the database.
"""

from __future__ import annotations

import hashlib
import re
import time
from importlib import metadata as package_metadata
from typing import Any

import orjson
from faust.web import Request, Response, View

from ..ingest.problems import DecodeResult
from ..schemas.codes import CATALOGUE
from ..schemas.observation import Observation
from ..timefmt import iso_ms

FHIR_JSON = "application/fhir+json"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def fhir_id(observation: Observation) -> str:
    """The Observation's FHIR id: its event id where that is a valid id, else a hash."""
    event_id = observation.event_id
    if FHIR_ID.match(event_id):
        return event_id
    return hashlib.sha256(event_id.encode()).hexdigest()[:32]


def base_url(request: Request) -> str:
    """The FHIR base this request reached (``.../fhir``)."""
    url: Any = request.url  # yarl.URL under Faust's aiohttp driver
    return str(url.with_path("/fhir").with_query(None))


def _now() -> str:
    return iso_ms(int(time.time() * 1000))


def created(view: View, request: Request, raw: bytes, published: list[Observation]) -> Response:
    """201 Created: Location of the new Observation and the resource as stored."""
    resource = orjson.loads(raw)
    identity = fhir_id(published[0])
    stored = {**resource, "id": identity, "meta": {"versionId": "1", "lastUpdated": _now()}}
    location = f"{base_url(request)}/Observation/{identity}/_history/1"
    return view.bytes(
        orjson.dumps(stored),
        status=201,
        content_type=FHIR_JSON,
        headers={"Location": location, "ETag": 'W/"1"'},
    )


def bundle_response(
    view: View,
    request: Request,
    raw: bytes,
    result: DecodeResult,
    published: list[Observation],
) -> Response:
    """200 OK: a transaction-response (or batch-response) Bundle, an entry per entry."""
    bundle = orjson.loads(raw)
    kind = "transaction-response" if bundle.get("type") == "transaction" else "batch-response"
    produced = {index: (first, end) for index, first, end in result.entries}
    base, now = base_url(request), _now()
    entries: list[dict[str, Any]] = []
    for index, _ in enumerate(bundle.get("entry", [])):
        span = produced.get(index)
        if span is None or span[0] == span[1]:
            entries.append({"response": {"status": "200 OK", "lastModified": now}})
            continue
        identity = fhir_id(published[span[0]])
        response = {
            "status": "201 Created",
            "location": f"Observation/{identity}/_history/1",
            "etag": 'W/"1"',
            "lastModified": now,
        }
        entries.append({"fullUrl": f"{base}/Observation/{identity}", "response": response})
    body = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return view.bytes(orjson.dumps(body), status=200, content_type=FHIR_JSON)


def _version() -> str:
    try:
        return package_metadata.version("bedside")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def capability_statement() -> dict[str, Any]:
    """What the gateway supports, as a FHIR R4 CapabilityStatement."""
    codes = ", ".join(sorted(CATALOGUE))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-06",
        "publisher": "Bedside",
        "kind": "instance",
        "software": {"name": "Bedside", "version": _version()},
        "implementation": {"description": "Bedside's ingest gateway (writes only)"},
        "fhirVersion": "4.0.1",
        "format": ["json", FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Observations are ingested for monitoring (decision support, not a "
                    f"diagnosis). LOINC codes understood: {codes}; other codes are kept as "
                    "labs. A Bundle (transaction, batch, collection or searchset) is taken "
                    "whole or refused whole."
                ),
                "security": {
                    "description": "Bearer token (BEDSIDE_WEB__TOKEN) when one is set",
                },
                "resource": [
                    {
                        "type": "Observation",
                        "profile": "http://hl7.org/fhir/StructureDefinition/Observation",
                        "interaction": [{"code": "create"}],
                        "versioning": "no-version",
                        "conditionalCreate": False,
                    }
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }


def metadata(view: View) -> Response:
    return view.bytes(orjson.dumps(capability_statement()), status=200, content_type=FHIR_JSON)
