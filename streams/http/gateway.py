"""HTTP gateway for integrations that cannot speak Kafka, on the worker's web server.

Routes (``application/json`` or ``application/fhir+json``):

- ``POST /v1/observations``: native JSON (one object or a list);
- ``POST /fhir/Observation``: one FHIR R4 Observation;
- ``POST /fhir``: a FHIR R4 Bundle (transaction, batch, collection, searchset);
- ``POST /api/v1/entries``: Nightscout entries, authenticated like Nightscout by the
  ``api-secret`` header (SHA-1 hex of the patient's secret).

A request is decoded exactly as the stream decodes records. If any part is invalid, nothing
is published and the answer is 400 naming every problem (a FHIR ``OperationOutcome`` on the
FHIR routes). Otherwise each observation is published, normalised, to the ingest topic of its
kind, keyed by patient id, and the answer (2xx) is sent only after the broker acknowledged
every write. 401 without valid credentials, 403 for a foreign Host or Origin
(``streams.http.guard``), 413 over the size limit, 415 for other types, 503 with
``Retry-After`` while the broker does not take the writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from ..ingest.decode import IngestLimits, decode_record
from ..ingest.native import native_record
from ..ingest.problems import DecodeResult, Problem, Reason
from ..monitoring import Monitor
from ..patients import PatientDirectory
from ..processing.stats import IngestStats
from ..schemas.observation import Format, Kind, Observation
from ..settings import Settings
from .guard import refusal
from .ports import RecordSink

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


#: OperationOutcome issue type per reason (FHIR R4 IssueType value set).
ISSUE_CODES = {
    Reason.MALFORMED_JSON: "structure",
    Reason.SCHEMA: "invalid",
    Reason.UNSUPPORTED: "not-supported",
    Reason.UNKNOWN_CODE: "code-invalid",
    Reason.UNIT: "value",
    Reason.IMPLAUSIBLE: "value",
    Reason.STATUS: "business-rule",
    Reason.TIME: "value",
    Reason.NO_VALUE: "required",
    Reason.PATIENT: "required",
    Reason.TOO_LARGE: "too-long",
    Reason.TOO_MANY_ENTRIES: "too-long",
    Reason.INTERNAL: "exception",
}


class HttpError(Exception):
    """A request refused before its content was decoded (auth, type, size, route)."""

    CODES = {
        401: ("unauthorized", "security"),
        403: ("forbidden", "forbidden"),
        503: ("unavailable", "transient"),
        413: ("too_large", "too-long"),
        415: ("unsupported_media_type", "not-supported"),
        400: ("schema", "invalid"),
    }

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self, fhir: bool) -> dict[str, Any]:
        error, issue = self.CODES[self.status]
        if fhir:
            return {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": issue, "diagnostics": self.message}],
            }
        return {"error": error, "message": self.message, "problems": []}


def bearer_ok(request: Request, token: bytes | None) -> bool:
    """True when no token is configured or the request carries it as a bearer token."""
    if not token:  # settings refuse an empty token; never read one as "no auth" here
        return token is None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token)


def operation_outcome(problems: list[Problem]) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome naming each problem and where it is."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": ISSUE_CODES.get(p.reason, "invalid"),
                "details": {"text": p.reason.value},
                "diagnostics": p.message,
                **({"expression": [p.pointer]} if p.pointer else {}),
            }
            for p in problems
        ],
    }


class Gateway:
    """How a gateway request is checked, decoded and published (routes: :func:`register`)."""

    def __init__(
        self,
        settings: Settings,
        records: RecordSink,
        monitor: Monitor,
        patients: PatientDirectory,
        stats: IngestStats,
    ) -> None:
        topics = settings.topics
        self.settings, self.records, self.monitor = settings, records, monitor
        self.patients, self.stats = patients, stats
        self.topic_of = {
            Kind.VITAL: topics.vitals,
            Kind.GLUCOSE: topics.glucose,
            Kind.LAB: topics.labs,
        }
        self.limits = IngestLimits(settings.ingest.max_record_bytes, settings.ingest.max_entries)
        web = settings.web
        self.token = web.token.get_secret_value().encode() if web.token else None
        self.nightscout = {
            hashlib.sha1(secret.get_secret_value().encode()).hexdigest(): patient  # noqa: S324
            for patient, secret in web.nightscout_secrets.items()
        }

    def admit(self, request: Request, nightscout_auth: bool) -> str | None:
        """Front door and credentials; the Nightscout patient where the route has one."""
        refused = refusal(request, self.settings.web, has_body=True)
        if refused is not None:
            raise HttpError(*refused)
        if nightscout_auth:
            return self.nightscout_patient(request)
        if not bearer_ok(request, self.token):
            raise HttpError(401, "missing or invalid bearer token")
        return None

    def nightscout_patient(self, request: Request) -> str:
        given = request.headers.get("api-secret", "").strip().lower()
        for digest, patient in self.nightscout.items():
            if hmac.compare_digest(given.encode(), digest.encode()):
                return patient
        if not self.nightscout:
            raise HttpError(
                401,
                "Nightscout uploads are not configured on this worker "
                "(BEDSIDE_WEB__NIGHTSCOUT_SECRETS)",
            )
        raise HttpError(401, "api-secret is not the SHA-1 of a known Nightscout secret")

    async def read_body(self, request: Request) -> bytes:
        limit = self.limits.max_record_bytes
        http: Any = request  # aiohttp.web.Request under Faust's aiohttp driver
        if http.content_length is not None and http.content_length > limit:
            raise HttpError(413, f"body over the {limit}-byte limit")
        body = bytearray()
        async for chunk in http.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > limit:
                raise HttpError(413, f"body over the {limit}-byte limit")
        return bytes(body)

    async def publish(self, observations: list[Observation]) -> None:
        """Each observation to its kind's topic; returns once the broker has every one."""
        if self.monitor.broker_down_since is not None:
            raise ConnectionError  # known unreachable: do not make the sender wait
        # the ingest topics get ids as keyed (no clear id when pseudonymised) from here
        observations = self.patients.observations(observations)
        futures = [
            await self.records.send(self.topic_of[o.kind], o.patient_id.encode(), native_record(o))
            for o in observations
        ]
        await asyncio.gather(*futures)  # 2xx only once the broker acknowledged every write

    async def handle(
        self,
        view: View,
        request: Request,
        *,
        expect: str,
        fhir: bool,
        nightscout_auth: bool = False,
    ) -> Response:
        self.stats.http_requests += 1
        try:
            patient = self.admit(request, nightscout_auth)
            raw = await self.read_body(request)
            result = decode_record(
                raw, received_at=datetime.now(UTC), limits=self.limits, nightscout_patient=patient
            )
            _check_route(result, raw, expect)
        except HttpError as exc:
            return _refused(view, exc, fhir)
        if result.problems:
            status = (
                413
                if result.problems[0].reason in (Reason.TOO_LARGE, Reason.TOO_MANY_ENTRIES)
                else 400
            )
            return _error(view, status, result.problems, fhir)
        try:
            timeout = self.settings.web.publish_timeout_s
            await asyncio.wait_for(self.publish(result.observations), timeout)
        except Exception as exc:  # noqa: BLE001 - the broker did not take it: say so, retry
            self.stats.http_unavailable += 1
            log.warning("gateway could not publish (%s): 503", type(exc).__name__)
            unavailable = HttpError(503, "the broker is not taking writes; retry later")
            return _refused(view, unavailable, fhir, {"Retry-After": str(RETRY_AFTER_S)})
        body = {
            "accepted": len(result.observations),
            "event_ids": [o.event_id for o in result.observations],
        }
        return view.json(body, status=201 if fhir else 200)


def register(app: faust.App, gateway: Gateway) -> None:
    """Add the gateway routes to the worker's web server."""

    @app.page("/v1/observations")
    class NativeObservations(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(self, request, expect="native", fhir=False)

    @app.page("/fhir/Observation")
    class FhirObservations(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(self, request, expect="Observation", fhir=True)

    @app.page("/fhir")
    class FhirBundles(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(self, request, expect="Bundle", fhir=True)

    @app.page("/api/v1/entries")
    class NightscoutEntries(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(
                self, request, expect="nightscout", fhir=False, nightscout_auth=True
            )


def _refused(
    view: View, exc: HttpError, fhir: bool, headers: dict[str, str] | None = None
) -> Response:
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return view.bytes(
        orjson.dumps(exc.body(fhir)),
        status=exc.status,
        headers=headers,
        content_type="application/fhir+json" if fhir else "application/json",
    )


def _check_route(result: DecodeResult, raw: bytes, expect: str) -> None:
    """Refuse a document of another format than the route's (before looking at its content)."""
    if result.format is None:
        return  # malformed JSON: the decoder's problem says so
    if expect == "native" and result.format is not Format.NATIVE:
        raise HttpError(400, f"this route takes native JSON, not {result.format}")
    if expect == "nightscout" and result.format is not Format.NIGHTSCOUT:
        raise HttpError(400, "this route takes Nightscout entries")
    if expect in ("Observation", "Bundle"):
        resource_type = (
            orjson.loads(raw).get("resourceType") if result.format is Format.FHIR else None
        )
        if resource_type != expect:
            raise HttpError(400, f"this route takes a FHIR {expect}")


def _error(view: View, status: int, problems: list[Problem], fhir: bool) -> Response:
    if fhir:
        return view.bytes(
            orjson.dumps(operation_outcome(problems)),
            status=status,
            content_type="application/fhir+json",
        )
    body = {
        "error": problems[0].reason.value,
        "message": problems[0].message,
        "problems": [
            {"reason": p.reason.value, "message": p.message, "pointer": p.pointer} for p in problems
        ],
    }
    return view.json(body, status=status)
