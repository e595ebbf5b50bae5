"""HTTP gateway for integrations that cannot speak Kafka, on the worker's web server.

Routes (``application/json`` or ``application/fhir+json``):

- ``POST /v1/observations``: native JSON (one object or a list);
- ``POST /fhir/Observation``: one FHIR R4 Observation;
- ``POST /fhir``: a FHIR R4 Bundle (transaction, batch, collection, searchset);
- ``GET /fhir/metadata``: the CapabilityStatement (the FHIR answers: ``fhir_rest``).

Nightscout's routes are ``streams.http.nightscout``.

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
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from . import fhir_rest
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

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self, fhir: bool) -> dict[str, Any]:
        error, issue = self.CODES[self.status]
        if fhir:
            return {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": issue, "diagnostics": self.message}],
            }
        return {"error": error, "message": self.message, "problems": []}


class Refused(Exception):
    """A request whose content has problems: nothing of it was published."""

    def __init__(self, status: int, problems: list[Problem]) -> None:
        super().__init__(problems[0].message if problems else "refused")
        self.status, self.problems = status, problems


@dataclass(frozen=True)
class Taken:
    """A request the broker has: its body, what it held, and the observations as published
    (ids as keyed: pseudonyms when ids are)."""

    request: Request
    raw: bytes
    result: DecodeResult
    published: list[Observation]


#: Decodes a request body received at a time (a decoder other than the stream's).
Decode = Callable[[bytes, datetime], DecodeResult]
#: The success response of a route, from what it took.
Answer = Callable[[View, Taken], Response]


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

    def front_door(self, request: Request, *, has_body: bool) -> None:
        """Host, Origin and content type (``streams.http.guard``); HttpError when refused."""
        refused = refusal(request, self.settings.web, has_body=has_body)
        if refused is not None:
            raise HttpError(*refused)

    def admit(self, request: Request) -> None:
        """Front door and the gateway's bearer token (Nightscout routes: ``nightscout``)."""
        self.front_door(request, has_body=True)
        if not bearer_ok(request, self.token):
            raise HttpError(401, "missing or invalid bearer token")

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

    async def publish(self, observations: list[Observation]) -> list[Observation]:
        """Each observation to its kind's topic; returns once the broker has every one,
        with the observations as published (ids as keyed)."""
        if self.monitor.broker_down_since is not None:
            raise ConnectionError  # known unreachable: do not make the sender wait
        # the ingest topics get ids as keyed (no clear id when pseudonymised) from here
        observations = self.patients.observations(observations)
        futures = [
            await self.records.send(self.topic_of[o.kind], o.patient_id.encode(), native_record(o))
            for o in observations
        ]
        await asyncio.gather(*futures)  # 2xx only once the broker acknowledged every write
        return observations

    async def take(
        self,
        request: Request,
        *,
        expect: str,
        patient: str | None = None,
        decode: Decode | None = None,
    ) -> Taken:
        """Read, decode and publish a request's body, once the broker has every
        observation. Raises :class:`HttpError` (not read, or the broker
        does not take it) or :class:`Refused` (its content has problems: nothing published).
        ``patient``: the Nightscout patient the credentials named; ``decode``: another
        decoder than the stream's (Nightscout treatments)."""
        self.stats.http_requests += 1
        raw = await self.read_body(request)
        now = datetime.now(UTC)
        if decode is None:
            result = decode_record(
                raw, received_at=now, limits=self.limits, nightscout_patient=patient
            )
            _check_route(result, raw, expect)
        else:
            result = decode(raw, now)
        if result.problems:
            too_big = result.problems[0].reason in (Reason.TOO_LARGE, Reason.TOO_MANY_ENTRIES)
            raise Refused(413 if too_big else 400, result.problems)
        try:
            timeout = self.settings.web.publish_timeout_s
            published = await asyncio.wait_for(self.publish(result.observations), timeout)
        except Exception as exc:  # noqa: BLE001 - the broker did not take it: say so, retry
            self.stats.http_unavailable += 1
            log.warning("gateway could not publish (%s): 503", type(exc).__name__)
            raise HttpError(
                503,
                "the broker is not taking writes; retry later",
                {"Retry-After": str(RETRY_AFTER_S)},
            ) from exc
        return Taken(request, raw, result, published)

    async def handle(
        self, view: View, request: Request, *, expect: str, fhir: bool, answer: Answer
    ) -> Response:
        """A gateway route: front door and bearer token, then :meth:`take`; ``answer``
        makes the success response from the body and what it held."""

        async def attempt() -> Response:
            self.admit(request)
            return answer(view, await self.take(request, expect=expect))

        return await answered(view, attempt, fhir=fhir)


async def answered(
    view: View, attempt: Callable[[], Awaitable[Response]], *, fhir: bool
) -> Response:
    """``attempt``'s response, or the answer to what it refused: before reading the content
    (:class:`HttpError`) or because of it (:class:`Refused`)."""
    try:
        return await attempt()
    except HttpError as exc:
        return refused(view, exc, fhir)
    except Refused as exc:
        return problems_answer(view, exc.status, exc.problems, fhir)


def native_answer(view: View, taken: Taken) -> Response:
    observations = taken.result.observations
    body = {"accepted": len(observations), "event_ids": [o.event_id for o in observations]}
    return view.json(body, status=200)


def register(app: faust.App, gateway: Gateway) -> None:
    """Add the gateway routes to the worker's web server (Nightscout's: ``nightscout``)."""

    @app.page("/v1/observations")
    class NativeObservations(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(
                self, request, expect="native", fhir=False, answer=native_answer
            )

    @app.page("/fhir/Observation")
    class FhirObservations(View):
        async def post(self, request: Request) -> Response:
            return await gateway.handle(
                self,
                request,
                expect="Observation",
                fhir=True,
                answer=lambda view, t: fhir_rest.created(view, t.request, t.raw, t.published),
            )

    for path in ("/fhir", "/fhir/"):  # a transaction or batch is POSTed to the base

        @app.page(path)
        class FhirBundles(View):
            async def post(self, request: Request) -> Response:
                return await gateway.handle(
                    self,
                    request,
                    expect="Bundle",
                    fhir=True,
                    answer=lambda view, t: fhir_rest.bundle_response(
                        view, t.request, t.raw, t.result, t.published
                    ),
                )

    @app.page("/fhir/metadata")
    class FhirMetadata(View):
        async def get(self, request: Request) -> Response:
            return fhir_rest.metadata(self)


def refused(view: View, exc: HttpError, fhir: bool) -> Response:
    """A request refused before its content was read, as its route answers."""
    headers = dict(exc.headers)
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
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


def problems_answer(view: View, status: int, problems: list[Problem], fhir: bool) -> Response:
    """A request whose content was refused: every problem, where it is."""
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
