"""The HTTP API described as OpenAPI 3.1: ``GET /openapi.json`` and a readable ``/docs``.

Every route of the worker's web server is declared here once (``OPERATIONS``): its
parameters, the pydantic model of its request body (the very models that validate the
requests: ``NativeObservation``, ``CodeExchange``, ``ActionBody``) and of each answer,
errors included (400/401/403/404/409/413/415/503, each with its body). The schemas are
generated from those models, so they cannot drift from them; a test checks that every
route the server registers is described and no other, and a property-based test
(schemathesis) calls every operation on a running worker and checks each answer against its
schema.

The document describes this deployment: the security of the gateway routes follows
``BEDSIDE_WEB__TOKEN`` (none on a loopback worker without one), and an OpenID Connect
scheme is listed when an identity provider is configured.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Literal

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from ..contracts import AlertEventContract
from ..ingest.native import NativeObservation
from ..settings import Settings
from .oidc import CodeExchange

VERSION = "1.0.0"  # of the HTTP API (additive changes only within a major version)
JSON = "application/json"
FHIR = "application/fhir+json"


# -- bodies ---------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Refusal(_Open):
    """Why a care-team or sign-in request was refused."""

    error: str = Field(description="unauthorized, forbidden, not_found, invalid, refused, …")
    detail: str = Field(description="the reason, in words")


class GatewayProblem(BaseModel):
    reason: str = Field(description="malformed_json, schema, unit, implausible, …")
    message: str
    pointer: str | None = Field(description="JSON pointer into the request body")


class GatewayRefusal(_Open):
    """Why an ingest request was refused: every problem, where it is (nothing published)."""

    error: str
    message: str
    problems: list[GatewayProblem]


class OperationOutcome(_Open):
    """A FHIR R4 OperationOutcome (the FHIR routes' refusals)."""

    resourceType: Literal["OperationOutcome"]  # noqa: N815 - FHIR's name
    issue: list[dict[str, Any]] = Field(min_length=1)


class FhirResource(_Open):
    """A FHIR R4 resource (an Observation as stored, a Bundle, a CapabilityStatement)."""

    resourceType: str  # noqa: N815 - FHIR's name


class Accepted(BaseModel):
    accepted: int = Field(ge=0, description="observations published")
    event_ids: list[str] = Field(description="their ids, as keyed")


class ActionBody(BaseModel):
    """An acknowledgement or snooze (the user comes from the credential, never the body)."""

    minutes: int | None = Field(None, ge=1, le=1440, description="snooze length (30)")


class ActionAccepted(_Open):
    status: Literal["accepted"]
    alert_id: str
    patient_id: str
    action: str
    by: str = Field(description="the signed-in user")


class ShownAlert(AlertEventContract):
    """An alarm transition as the caller may see it (``display_id``: the sender's id of a
    pseudonymised patient; model drivers for physicians and up)."""

    display_id: str | None = None


class OpenAlerts(BaseModel):
    open: list[ShownAlert]
    events_seen: int


class Me(BaseModel):
    name: str
    role: Literal["nurse", "physician", "admin"]
    wards: list[str]
    ward_choices: list[str]


class PublicUser(BaseModel):
    name: str
    role: Literal["nurse", "physician", "admin"]
    wards: list[str]


class UsersList(BaseModel):
    users: list[PublicUser]


class Ward(BaseModel):
    patients: list[dict[str, Any]] = Field(description="one row per patient of the wards")
    connected: bool = Field(description="whether the view follows the risk topic")


class PatientAlerts(_Open):
    patient_id: str
    row: dict[str, Any] | None
    transitions: list[ShownAlert]


class Series(_Open):
    patient_id: str


class Window(_Open):
    patient_id: str
    summary: dict[str, Any]
    audit: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]
    app: str


class Ready(BaseModel):
    ready: bool
    rebalancing: bool
    recovered: bool
    assigned_partitions: int
    problems: list[str]


class Serving(BaseModel):
    serving: bool
    problems: list[str]
    monitoring: list[str]


class ProviderConfig(BaseModel):
    issuer: str
    authorization_endpoint: str
    client_id: str | None
    scope: str


class SigninConfig(BaseModel):
    oidc: ProviderConfig | None


class SignedIn(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_at: float | None
    user: PublicUser


class NightscoutStatus(_Open):
    status: Literal["ok"]
    version: str
    apiEnabled: bool  # noqa: N815 - Nightscout's name
    serverTimeEpoch: int  # noqa: N815


class NightscoutEntry(_Open):
    type: Literal["sgv", "mbg"]
    date: int
    dateString: str  # noqa: N815 - Nightscout's name


# -- operations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Many:
    """An answer that is a list of ``model``."""

    model: type[BaseModel]


Security = Literal["none", "user", "device", "nightscout"]
Body = type[BaseModel] | Many | Literal["json", "fhir", "text", "html", "events", "static"]


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post"]
    path: str
    summary: str
    tag: str
    security: Security = "none"
    request: type[BaseModel] | Literal["json", "fhir"] | None = None
    request_list: bool = False  # the body may also be a list of ``request``
    answers: dict[int, tuple[str, Body]] = field(default_factory=dict)
    query: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # name, description, schema


R: Body = Refusal
GR: Body = GatewayRefusal
OO: Body = OperationOutcome
USER_ERRORS = {401: ("not signed in, or the sign-in expired", R)}
SOME_PATIENT = {
    **USER_ERRORS,
    403: ("the patient is not in the caller's wards", R),
}
GATEWAY_ERRORS = {
    400: ("malformed: every problem, nothing published", GR),
    401: ("missing or invalid credentials", GR),
    403: ("Host or Origin not allowed", GR),
    413: ("over the size or entry limit", GR),
    415: ("not application/json", GR),
    503: ("the broker does not take writes now (Retry-After)", GR),
}
FHIR_ERRORS = {status: (words, OO) for status, (words, _) in GATEWAY_ERRORS.items()}
PATIENT_ID = ("patient_id", "the patient's id (as the caller knows it)", {"type": "string"})
NS_WINDOW = (
    ("count", "newest entries to return (10, at most 1000)", {"type": "integer"}),
    ("find[date][$gte]", "oldest date, epoch ms", {"type": "number"}),
    ("find[date][$gt]", "older than this excluded, epoch ms", {"type": "number"}),
    ("find[date][$lte]", "newest date, epoch ms", {"type": "number"}),
    ("find[date][$lt]", "newer than this excluded, epoch ms", {"type": "number"}),
)


def _nightscout_entries(path: str) -> list[Operation]:
    return [
        Operation("post", path, "Nightscout entries (readings) from an uploader", "nightscout",
                  "nightscout", "json", answers={200: ("the entries as taken", NightscoutEntry),
                                                 **GATEWAY_ERRORS}),
        Operation("get", path, "The patient's newest readings, Nightscout's shape", "nightscout",
                  "nightscout", answers={200: ("newest first", Many(NightscoutEntry)),
                                         **{k: GATEWAY_ERRORS[k] for k in (401, 403, 503)},
                                         400: ("count or a date bound is not a number", GR)},
                  query=NS_WINDOW),
    ]  # fmt: skip


OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/observations", "Native observations (one or a list)", "ingest",
              "device", NativeObservation, request_list=True,
              answers={200: ("published, once the broker has every one", Accepted),
                       **GATEWAY_ERRORS}),
    Operation("post", "/fhir/Observation", "One FHIR R4 Observation", "ingest", "device", "fhir",
              answers={201: ("created: Location and the resource as stored", FhirResource),
                       **FHIR_ERRORS}),
    *(Operation("post", path, "A FHIR R4 Bundle (transaction, batch, collection)", "ingest",
                "device", "fhir", answers={200: ("a transaction-response or batch-response",
                                                 FhirResource), **FHIR_ERRORS})
      for path in ("/fhir", "/fhir/")),
    Operation("get", "/fhir/metadata", "The FHIR CapabilityStatement", "ingest",
              answers={200: ("CapabilityStatement", FhirResource)}),
    *_nightscout_entries("/api/v1/entries"),
    *_nightscout_entries("/api/v1/entries.json"),
    *_nightscout_entries("/api/v1/entries/sgv.json"),
    *(Operation("get", path, "Nightscout server status (no patient data)", "nightscout",
                answers={200: ("status", NightscoutStatus)})
      for path in ("/api/v1/status.json", "/api/v1/status")),
    Operation("post", "/api/v1/treatments", "Insulin and carbohydrates (others acknowledged, "
              "not kept)", "nightscout", "nightscout", "json",
              answers={200: ("the treatments as sent", "json"), **GATEWAY_ERRORS}),
    Operation("post", "/api/v1/devicestatus", "Device status: acknowledged, not stored",
              "nightscout", "nightscout", "json",
              answers={200: ("the statuses as sent", "json"), **GATEWAY_ERRORS}),
    Operation("get", "/v1/alerts", "Open alarms of the caller's wards, most severe first",
              "alarms", "user", answers={200: ("open alarms", OpenAlerts), **USER_ERRORS}),
    Operation("get", "/v1/alerts/stream", "Each new alarm transition of the caller's wards "
              "(server-sent events)", "alarms", "user",
              answers={200: ("text/event-stream: one alert event per message", "events"),
                       **USER_ERRORS}),
    *(Operation("post", f"/v1/alerts/{{alert_id}}/{action}", f"{words} an alarm", "alarms",
                "user", ActionBody,
                answers={202: ("published on the actions topic (signed)", ActionAccepted),
                         400: ("a body other than {\"minutes\": …}", R),
                         **USER_ERRORS,
                         403: ("Host or Origin not allowed", R),
                         404: ("no such alarm in the caller's wards", R),
                         409: ("the alarm is already resolved", R),
                         415: ("not application/json", R),
                         503: ("the broker does not take the action now (Retry-After)", R)},
                query=(("alert_id", "the alarm's id", {"type": "string"}),))
      for action, words in (("ack", "Acknowledge"), ("snooze", "Snooze"))),
    Operation("get", "/v1/patients/{patient_id}/series", "A patient's stored series", "patients",
              "user", answers={200: ("series by measurement", Series),
                               400: ("hours or measurements not understood", R),
                               **SOME_PATIENT,
                               503: ("the time-series server does not answer", R)},
              query=(PATIENT_ID,
                     ("hours", "how far back (0.25–72; 6)", {"type": "number"}),
                     ("measurements", "comma-separated: glucose, vitals", {"type": "string"}))),
    Operation("get", "/v1/patients/{patient_id}/window", "A patient's stored window and state",
              "patients", "user", answers={200: ("the window", Window), **SOME_PATIENT,
                                           404: ("no stored window on this worker", R)},
              query=(PATIENT_ID,)),
    Operation("get", "/v1/patients/{patient_id}/alerts", "A patient's row and recent "
              "transitions", "patients", "user",
              answers={200: ("row and transitions", PatientAlerts), **SOME_PATIENT},
              query=(PATIENT_ID,)),
    Operation("get", "/v1/ward", "A row per patient of the caller's wards", "ward", "user",
              answers={200: ("the rows", Ward), **USER_ERRORS,
                       403: ("the ward asked for is not the caller's", R)},
              query=(("ward", "one ward of the caller's", {"type": "string"}),)),
    Operation("get", "/v1/ward/stream", "Rows and alarms of the caller's wards as they change "
              "(server-sent events)", "ward", "user",
              answers={200: ("text/event-stream: alert, rows, reload, signout", "events"),
                       **SOME_PATIENT},
              query=(("ward", "one ward of the caller's", {"type": "string"}),
                     ("patient", "one patient of the caller's", {"type": "string"}))),
    Operation("get", "/v1/me", "The signed-in user", "care team", "user",
              answers={200: ("who the credential signs in", Me), **USER_ERRORS}),
    Operation("get", "/v1/admin/users", "The users file's users (never tokens)", "care team",
              "user", answers={200: ("users", UsersList), **USER_ERRORS,
                               403: ("an admin may read this", R)}),
    Operation("get", "/v1/signin/config", "How the pages sign people in", "sign-in",
              answers={200: ("the identity provider, or null", SigninConfig),
                       503: ("the identity provider has not answered yet", R)}),
    Operation("post", "/v1/signin/oidc", "The pages' authorisation-code exchange (PKCE)",
              "sign-in", request=CodeExchange,
              answers={200: ("the access token and who it signs in", SignedIn),
                       400: ("body or redirect_uri refused", R),
                       401: ("the token the provider gave is not valid here", R),
                       403: ("no Bedside role or ward in the token; or Host/Origin", R),
                       404: ("no identity provider is configured", R),
                       415: ("not application/json", R),
                       502: ("the identity provider refused the code", R)}),
    Operation("get", "/health", "Liveness", "operations", answers={200: ("alive", Health)}),
    Operation("get", "/ready", "Assigned, recovered and monitoring", "operations",
              answers={200: ("ready", Ready), 503: ("not ready: the problems", Ready)}),
    Operation("get", "/serving", "Can serve HTTP and publish (load balancers)", "operations",
              answers={200: ("serving", Serving), 503: ("not serving", Serving)}),
    Operation("get", "/stats", "Counters of this worker", "operations",
              answers={200: ("counters", "json")}),
    Operation("get", "/metrics", "Prometheus metrics", "operations",
              answers={200: ("text exposition format", "text")}),
    Operation("get", "/openapi.json", "This document", "operations",
              answers={200: ("OpenAPI 3.1", "json")}),
    Operation("get", "/docs", "This document, readable", "operations",
              answers={200: ("HTML", "html")}),
    Operation("get", "/ui", "The ward view", "pages", answers={200: ("HTML", "html")}),
    Operation("get", "/ui/signin", "Where the identity provider sends the browser back",
              "pages", answers={200: ("HTML", "html")}),
    Operation("get", "/ui/patients/{patient_id}", "A patient's page", "pages",
              answers={200: ("HTML", "html")}, query=(PATIENT_ID,)),
    Operation("get", "/ui/static/{name}", "The pages' script, style and chart library",
              "pages", answers={200: ("the file", "static"), 404: ("no such file", R)},
              query=(("name", "file name", {"type": "string"}),)),
)  # fmt: skip


# -- the document ---------------------------------------------------------------------------
def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for op in OPERATIONS:
        for body in (op.request, *(body for _, body in op.answers.values())):
            candidate = body.model if isinstance(body, Many) else body
            if isinstance(candidate, type):
                found[candidate.__name__] = candidate
    return list(found.values())


def _content(body: Body, *, as_list: bool = False, schemas: dict[str, Any]) -> dict[str, Any]:
    if body == "events":
        return {"text/event-stream": {"schema": {"type": "string"}}}
    if body == "text":
        return {"text/plain": {"schema": {"type": "string"}}}
    if body == "html":
        return {"text/html": {"schema": {"type": "string"}}}
    if body == "static":
        return {"*/*": {"schema": {"type": "string"}}}
    if body in ("json", "fhir"):
        return {FHIR if body == "fhir" else JSON: {"schema": {}}}
    if isinstance(body, Many):
        return {JSON: {"schema": {"type": "array", "items": schemas[body.model.__name__]}}}
    assert isinstance(body, type)
    schema: dict[str, Any] = schemas[body.__name__]
    if as_list:
        schema = {"oneOf": [schema, {"type": "array", "items": schema}]}
    media = FHIR if body in (OperationOutcome, FhirResource) else JSON
    return {media: {"schema": schema}}


def _security(op: Operation, settings: Settings) -> list[dict[str, list[str]]] | None:
    if op.security == "user":
        if settings.web.auth == "none":
            return []
        schemes: list[dict[str, list[str]]] = [{"user": []}]
        return [*schemes, {"oidc": []}] if settings.oidc.enabled else schemes
    if op.security == "device":
        return [{"device": []}] if settings.web.token is not None else []
    if op.security == "nightscout":
        return [{"apiSecret": []}, {"secretQuery": []}, {"tokenQuery": []}, {"nsBearer": []}]
    return []


def operation_id(op: Operation) -> str:
    """``get_v1_alerts``; a trailing slash is its own operation (``post_fhir_``)."""
    bare = op.path.strip("/").replace("{", "").replace("}", "")
    words = "".join(c if c.isalnum() else "_" for c in bare)
    return f"{op.method}_{words}" + ("_" if op.path.endswith("/") and op.path != "/" else "")


def _operation(op: Operation, settings: Settings, schemas: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "operationId": operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(op, settings),
        "responses": {
            str(status): {"description": words, "content": _content(body, schemas=schemas)}
            for status, (words, body) in sorted(op.answers.items())
        },
    }
    if op.query:
        found["parameters"] = [
            {
                "name": name,
                "in": "path" if f"{{{name}}}" in op.path else "query",
                "required": f"{{{name}}}" in op.path,
                "description": words,
                "schema": schema,
            }
            for name, words, schema in op.query
        ]
    if op.request is not None:
        found["requestBody"] = {
            "required": op.request not in (ActionBody,),
            "content": _content(op.request, as_list=op.request_list, schemas=schemas),
        }
    return found


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this worker's HTTP API."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _models()], ref_template="#/components/schemas/{model}"
    )
    components = defs.get("$defs", {})
    refs = {name: {"$ref": f"#/components/schemas/{name}"} for name in components}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, settings, refs)
    schemes: dict[str, Any] = {
        "user": {"type": "http", "scheme": "bearer",
                 "description": "a care-team user's token (users file) or the identity "
                                "provider's access token"},
        "device": {"type": "http", "scheme": "bearer",
                   "description": "the gateway's device token (BEDSIDE_WEB__TOKEN)"},
        "apiSecret": {"type": "apiKey", "in": "header", "name": "api-secret",
                      "description": "SHA-1 hex of a patient's Nightscout secret"},
        "secretQuery": {"type": "apiKey", "in": "query", "name": "secret"},
        "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
        "nsBearer": {"type": "http", "scheme": "bearer",
                             "description": "a patient's Nightscout access token"},
    }  # fmt: skip
    if settings.oidc.enabled:
        issuer = str(settings.oidc.issuer).rstrip("/")
        schemes["oidc"] = {
            "type": "openIdConnect",
            "openIdConnectUrl": f"{issuer}/.well-known/openid-configuration",
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bedside",
            "version": VERSION,
            "description": "Decision support, not a diagnosis. Ingest (native, FHIR R4, "
            "Nightscout), alarms and the care team's actions, the ward view, operations.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": schemes},
    }


def readable(spec: dict[str, Any]) -> str:
    """The document as a plain HTML page (no script): each operation, its answers."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            answers = ", ".join(f"{s} {a['description']}" for s, a in op["responses"].items())
            secured = " or ".join(next(iter(s)) for s in op["security"] if s) or "none"
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(secured)}</td>"
                f"<td>{html.escape(answers)}</td></tr>"
            )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Bedside API</title>"
        "<link rel=stylesheet href=/ui/static/bedside.css><body><h1>Bedside HTTP API "
        f"{spec['info']['version']}</h1><p>Machine-readable: <a href=/openapi.json>"
        "/openapi.json</a> (OpenAPI 3.1).</p><table><tr><th>operation</th><th>what</th>"
        f"<th>credentials</th><th>answers</th></tr>{''.join(rows)}</table></body></html>"
    )


def register(app: faust.App, settings: Settings, page_headers: dict[str, str]) -> None:
    """Add ``GET /openapi.json`` and ``GET /docs``."""
    spec = document(settings)
    page = readable(spec)

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.json(spec)

    @app.page("/docs")
    class Docs(View):
        async def get(self, request: Request) -> Response:
            return self.html(page, headers=page_headers)
