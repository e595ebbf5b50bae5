"""Nightscout API v1 as uploaders and followers call it, one patient per secret.

What FreeStyle Libre, Dexcom and pump uploaders (nightscout-librelink-up, xDrip+, Loop,
AndroidAPS) and site checkers call:

- ``POST /api/v1/entries`` (also ``/api/v1/entries.json``, ``/api/v1/entries/sgv.json``):
  readings, answered **200** with the entries as taken (``_id``, ``type``, ``sgv``/``mbg``,
  ``date``, ``dateString``, ``device``);
- ``GET`` the same paths: the patient's newest readings, newest first, in Nightscout's shape
  (``direction`` from the rate between readings), read back from the time-series server;
  ``count`` (10; at most 1000) and ``find[date][$gte|$gt|$lte|$lt]`` (epoch ms); 503 while
  the time-series server does not answer;
- ``GET /api/v1/status.json`` (and ``/api/v1/status``): ``status``, ``version``,
  ``apiEnabled``, ``settings.units``, ``serverTime`` (no patient data: no secret needed);
- ``POST /api/v1/treatments``: insulin and carbohydrates become observations
  (``streams.ingest.nightscout.decode_treatments``); other treatments are acknowledged and
  not kept; answered 200 with the treatments as sent;
- ``POST /api/v1/devicestatus``: pump, loop and phone state, acknowledged (200) and **not
  stored**: Bedside does not use it.

Credentials as Nightscout takes them: the ``api-secret`` header (SHA-1 hex of the
patient's secret, ``BEDSIDE_WEB__NIGHTSCOUT_SECRETS``), ``?secret=`` (the SHA-1 hex or the
secret itself), or an access token (``?token=`` or ``Authorization: Bearer``,
``BEDSIDE_WEB__NIGHTSCOUT_TOKENS``). A secret or token names one patient: it reads and
writes that patient only.
Malformed content is refused whole (400 with every problem) as on the other gateway routes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import time
from datetime import datetime
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from ..ingest.nightscout import ENTRY_CODES, decode_treatments
from ..ingest.problems import DecodeResult, Reason
from ..schemas.observation import Observation
from ..sinks.reader import SeriesReader
from ..timefmt import iso_ms
from .gateway import Gateway, HttpError, answered

API_VERSION = "15.0.2"  # the Nightscout API v1 this follows (status.json's version)
MAX_COUNT = 1000
DEFAULT_COUNT = 10
DEFAULT_SPAN_MS = 3 * 24 * 3_600_000  # how far back a read looks without find[date]
TYPE_OF_CODE = {code: kind for kind, code in ENTRY_CODES.items()}
#: Nightscout's arrows by rate of change (mg/dL per minute), steepest first
DIRECTIONS = (
    (3.0, "DoubleUp"),
    (2.0, "SingleUp"),
    (1.0, "FortyFiveUp"),
    (-1.0, "Flat"),
    (-2.0, "FortyFiveDown"),
    (-3.0, "SingleDown"),
)


def direction(rate: float | None) -> str:
    """Nightscout's direction name for a rate (mg/dL per minute)."""
    if rate is None or not math.isfinite(rate):
        return "NONE"
    for floor, name in DIRECTIONS:
        if rate > floor:
            return name
    return "DoubleDown"


def entry_of(observation: Observation) -> dict[str, Any]:
    """An observation as the Nightscout entry it came from."""
    t_ms = int(observation.effective_at.timestamp() * 1000)
    kind = TYPE_OF_CODE.get(observation.code, "sgv")
    return {
        "_id": observation.event_id,
        "type": kind,
        kind: observation.value,
        "date": t_ms,
        "dateString": iso_ms(t_ms),
        "device": observation.source,
    }


def entries_of(points: list[list[float]], kind: str, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` readings as Nightscout entries, newest first."""
    ordered = sorted(points)
    found = []
    for index in range(len(ordered) - 1, max(-1, len(ordered) - 1 - count), -1):
        t, value = int(ordered[index][0]), ordered[index][1]
        rate = None
        if index > 0:
            before_t, before = ordered[index - 1]
            minutes = (t - before_t) / 60_000
            rate = (value - before) / minutes if 0 < minutes <= 15 else None
        found.append(
            {
                "_id": f"{kind}-{t}",
                "type": kind,
                kind: round(value),
                "date": t,
                "dateString": iso_ms(t),
                "direction": direction(rate),
                "device": "bedside",
            }
        )
    return found


def treatments_of(patient: str, raw: bytes, received_at: datetime) -> DecodeResult:
    """A treatments body of ``patient`` decoded (``Gateway.take``'s decoder)."""
    result = DecodeResult(format=None)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        result.reject(Reason.MALFORMED_JSON, "body is not JSON")
        return result
    decode_treatments(document, patient_id=patient, received_at=received_at, result=result)
    return result


def window_of(request: Request) -> tuple[int, int, int]:
    """(count, first ms, last ms) of a read, from ``count`` and ``find[date][...]``."""
    query = request.query

    def number(name: str) -> float | None:
        text = query.get(name)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError as error:
            raise HttpError(400, f"{name}: a number") from error
        if not math.isfinite(value):
            raise HttpError(400, f"{name}: a number")
        return value

    count = number("count")
    now = int(time.time() * 1000)
    newest = min(
        v for v in (number("find[date][$lte]"), number("find[date][$lt]"), now + 300_000) if v
    )
    oldest = max(
        v
        for v in (number("find[date][$gte]"), number("find[date][$gt]"), newest - DEFAULT_SPAN_MS)
        if v is not None
    )
    wanted = DEFAULT_COUNT if count is None else int(min(max(count, 1), MAX_COUNT))
    return wanted, int(oldest), int(newest)


class NightscoutApi:
    """The Nightscout routes' work (routes: :func:`register`)."""

    def __init__(self, gateway: Gateway, reader: SeriesReader) -> None:
        self.gateway, self.reader = gateway, reader
        web = gateway.settings.web
        self.secrets = {
            patient: secret.get_secret_value() for patient, secret in web.nightscout_secrets.items()
        }
        self.digests = {
            hashlib.sha1(secret.encode()).hexdigest(): patient  # noqa: S324 - Nightscout's
            for patient, secret in self.secrets.items()
        }
        self.tokens = {
            token.get_secret_value(): patient for patient, token in web.nightscout_tokens.items()
        }

    def patient(self, request: Request, *, has_body: bool) -> str:
        """Front door, then the patient the credentials name (api-secret or ?secret=)."""
        self.gateway.front_door(request, has_body=has_body)
        if not self.digests and not self.tokens:
            raise HttpError(
                401,
                "Nightscout uploads are not configured on this worker "
                "(BEDSIDE_WEB__NIGHTSCOUT_SECRETS, BEDSIDE_WEB__NIGHTSCOUT_TOKENS)",
            )
        found = self._by_secret(request) or self._by_token(request)
        if found is None:
            raise HttpError(401, "no known Nightscout secret (api-secret, secret) or token")
        return found

    def _by_secret(self, request: Request) -> str | None:
        given = (request.headers.get("api-secret") or request.query.get("secret") or "").strip()
        if not given:
            return None
        digest = given.lower()
        if not (len(digest) == 40 and all(c in "0123456789abcdef" for c in digest)):
            digest = hashlib.sha1(given.encode()).hexdigest()  # noqa: S324 - the secret itself
        found = None
        for known, patient in self.digests.items():
            if hmac.compare_digest(digest.encode(), known.encode()):
                found = patient
        return found

    def _by_token(self, request: Request) -> str | None:
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        given = request.query.get("token") or (bearer if scheme.lower() == "bearer" else "")
        found = None
        for known, patient in self.tokens.items():
            if given and hmac.compare_digest(given.strip().encode(), known.encode()):
                found = patient
        return found

    async def post_entries(self, view: View, request: Request) -> Response:
        async def attempt() -> Response:
            patient = self.patient(request, has_body=True)
            taken = await self.gateway.take(request, expect="nightscout", patient=patient)
            return view.json([entry_of(o) for o in taken.result.observations], status=200)

        return await answered(view, attempt, fhir=False)

    async def get_entries(self, view: View, request: Request) -> Response:
        return await answered(view, lambda: self._read_entries(view, request), fhir=False)

    async def _read_entries(self, view: View, request: Request) -> Response:
        patient = self.patient(request, has_body=False)
        count, oldest, newest = window_of(request)
        keyed = self.gateway.patients.key(patient)  # series are stored as ids are keyed
        try:
            series = await self.reader.series(keyed, "glucose", oldest, newest)
        except Exception as error:  # noqa: BLE001 - the reads degrade, the stream is fine
            raise HttpError(
                503,
                f"the time-series server does not answer ({type(error).__name__})",
                {"Retry-After": "30"},
            ) from error
        found: list[dict[str, Any]] = []
        for code, kind in TYPE_OF_CODE.items():
            found += entries_of(series.get(code, []), kind, count)
        found.sort(key=lambda e: -e["date"])
        return view.json(found[:count])

    def status(self, view: View) -> Response:
        now = int(time.time() * 1000)
        body = {
            "status": "ok",
            "name": "bedside",
            "version": API_VERSION,
            "serverTime": iso_ms(now),
            "serverTimeEpoch": now,
            "apiEnabled": True,
            "careportalEnabled": False,
            "settings": {"units": "mg/dl", "enable": ["careportal"], "authDefaultRoles": ""},
            "extendedSettings": {},
        }
        return view.json(body)

    async def post_treatments(self, view: View, request: Request) -> Response:
        async def attempt() -> Response:
            patient = self.patient(request, has_body=True)
            decode = functools.partial(treatments_of, patient)
            taken = await self.gateway.take(request, expect="treatments", decode=decode)
            sent = orjson.loads(taken.raw)
            return view.json(sent if isinstance(sent, list) else [sent], status=200)

        return await answered(view, attempt, fhir=False)

    async def post_devicestatus(self, view: View, request: Request) -> Response:
        async def attempt() -> Response:
            self.patient(request, has_body=True)
            raw = await self.gateway.read_body(request)
            try:
                sent = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                raise HttpError(400, "body is not JSON") from error
            return view.json(sent if isinstance(sent, list) else [sent], status=200)

        return await answered(view, attempt, fhir=False)


def register(app: faust.App, api: NightscoutApi) -> None:
    """Add the Nightscout v1 routes (``api``: what they use)."""
    for path in ("/api/v1/entries", "/api/v1/entries.json", "/api/v1/entries/sgv.json"):

        @app.page(path)
        class Entries(View):
            async def get(self, request: Request) -> Response:
                return await api.get_entries(self, request)

            async def post(self, request: Request) -> Response:
                return await api.post_entries(self, request)

    for path in ("/api/v1/status.json", "/api/v1/status"):

        @app.page(path)
        class Status(View):
            async def get(self, request: Request) -> Response:
                return api.status(self)

    @app.page("/api/v1/treatments")
    class Treatments(View):
        async def post(self, request: Request) -> Response:
            return await api.post_treatments(self, request)

    @app.page("/api/v1/devicestatus")
    class DeviceStatus(View):
        async def post(self, request: Request) -> Response:
            return await api.post_devicestatus(self, request)
