"""Alarms over HTTP (the care-team pages: ``streams.http.pages``).

- ``GET /v1/alerts``: open alarms of the user's wards (from the worker's alert view);
- ``GET /v1/alerts/stream``: the same, live, as server-sent events (one per transition);
- ``POST /v1/alerts/{alert_id}/ack`` and ``/snooze`` (body ``{"minutes": ...}``): publishes
  the action, signed, to ``alert-acks`` keyed by the patient and answers 202 once the broker
  has it; ``by`` is the signed-in user (a ``by`` in the body is ignored); the
  ``acknowledged`` / ``snoozed`` transition follows on the alerts topic. Unknown ids: 404;
  resolved ones: 409;
- ``GET /v1/patients/{patient_id}/series?hours=6&measurements=glucose,vitals``: series read
  back from the time-series server for the charts (``risk``: scores such as NEWS2), at most
  72 h; one request per chart, which then appends live points (``streams.http.pages``);
- ``GET /v1/me``: the signed-in user; ``GET /v1/admin/users``: every user (admins);

Every route needs a signed-in user (``streams.http.signin``) and answers only about the
patients of their wards: alerts of other wards are not listed or streamed, and unknown to
actions (404); series and windows of other wards are 403.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from pydantic import ValidationError

from ..access.signing import Keys, action_signature
from ..access.users import Role, User
from ..alerts.actions import AlertAction
from ..monitoring import Monitor
from ..settings import Settings
from ..sinks.reader import SeriesReader
from .guard import refusal
from .ports import AlarmBoard, RecordSink
from .signin import Access, guarded
from .sse import event_stream

SEVERITY_RANK = {"critical": 0, "urgent": 1, "warning": 2, "info": 3}
SERIES = ("glucose", "vitals", "risk")  # what a chart may read


class AlarmsApi:
    """The alarm routes' work (routes: :func:`register`)."""

    def __init__(
        self,
        settings: Settings,
        access: Access,
        keys: Keys,
        monitor: Monitor,
        view: AlarmBoard,
        records: RecordSink,
        reader: SeriesReader,
    ) -> None:
        self.settings, self.view, self.records, self.reader = settings, view, records, reader
        self.access, self.keys, self.monitor = access, keys, monitor

    def open_alerts(self, user: User) -> dict[str, Any]:
        alerts = sorted(
            (
                self.access.shown(user, e)
                for e in self.view.open.values()
                if self.access.sees(user, e["patient_id"])
            ),
            key=lambda e: (SEVERITY_RANK.get(e["severity"], 9), e["opened_at"]),
        )
        return {"open": alerts, "events_seen": self.view.events}

    async def stream(self, request: Request, user: User) -> aioweb.StreamResponse:
        """Every new transition of the user's wards as a server-sent event."""

        def render(event: dict[str, Any]) -> list[tuple[str | None, bytes]]:
            if not self.access.sees(user, event["patient_id"]):
                return []
            return [(None, orjson.dumps(self.access.shown(user, event)))]

        return await event_stream(
            request,
            [self.view.subscribers],
            render,
            still_allowed=lambda: self.access.still(user),
            max_s=self.settings.web.stream_max_s,
        )

    async def act(self, web: View, request: Request, alert_id: str, action: str) -> Response:
        user = self.access.caller(request)
        raw = await request.read()
        refused = refusal(request, self.settings.web, has_body=bool(raw.strip()))
        if refused is not None:
            return web.json({"error": "refused", "detail": refused[1]}, status=refused[0])
        event = self.view.get(alert_id)
        if event is None or not self.access.sees(user, event["patient_id"]):
            # another ward's alarm is answered as unknown: its existence is patient data
            return web.json(
                {"error": "not_found", "detail": f"no alert {alert_id} is known"}, status=404
            )
        if event["state"] == "resolved":
            return web.json(
                {"error": "resolved", "detail": f"alert {alert_id} is already resolved"},
                status=409,
            )
        try:
            body = orjson.loads(raw) if raw.strip() else {}
            command = AlertAction(
                alert_id=alert_id,
                patient_id=event["patient_id"],
                action=action,
                by=user.name,  # from the credential, never from the body
                minutes=int(body.get("minutes") or 30),
                issued_at_ms=int(time.time() * 1000),
                nonce=secrets.token_hex(16),
            )
        except (orjson.JSONDecodeError, ValidationError, ValueError, TypeError, AttributeError):
            return web.json({"error": "invalid", "detail": 'expected {"minutes": ...}'}, status=400)
        signature = action_signature(self.keys.actions, command.model_dump())
        command = command.model_copy(update={"sig": signature})
        unavailable = web.json(
            {"error": "unavailable", "detail": "the broker does not take the action now; retry"},
            status=503,
            headers={"Retry-After": "5"},
        )
        if self.monitor.broker_down_since is not None:
            return unavailable  # known unreachable: do not make the nurse wait
        try:
            sent = await asyncio.wait_for(
                self.records.send(
                    self.settings.topics.alert_acks,
                    command.patient_id.encode(),
                    command.model_dump_json().encode(),
                ),
                self.settings.web.publish_timeout_s,
            )
            await asyncio.wait_for(sent, self.settings.web.publish_timeout_s)  # the broker has it
        except Exception:  # noqa: BLE001 - a timeout or a producer error: the action is not taken
            return unavailable
        shown = command.model_dump(exclude={"sig"})
        return web.json({"status": "accepted", **shown}, status=202)

    async def series(self, web: View, request: Request, patient_id: str) -> Response:
        self.access.patient(request, patient_id)
        try:
            asked = float(request.query.get("hours", "6"))
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked):
            return web.json({"error": "invalid", "detail": "hours: a number"}, status=400)
        hours = min(max(asked, 0.25), 72.0)
        wanted = request.query.get("measurements", "glucose,vitals").split(",")
        if not wanted or any(m not in SERIES for m in wanted):
            detail = f"measurements: some of {', '.join(SERIES)}"
            return web.json({"error": "invalid", "detail": detail}, status=400)
        end = int(time.time() * 1000) + 300_000
        start = end - int(hours * 3_600_000)
        found: dict[str, Any] = {"patient_id": patient_id}
        try:
            for measurement in dict.fromkeys(wanted):
                found[measurement] = await self.reader.series(patient_id, measurement, start, end)
        except Exception as error:  # noqa: BLE001 - the page degrades, the stream is fine
            return web.json({"error": "unavailable", "detail": type(error).__name__}, status=503)
        return web.json(found)


def register(app: faust.App, api: AlarmsApi) -> None:
    """Add the alarm routes (``api`` holds what they use: see :class:`AlarmsApi`)."""
    access = api.access

    @app.page("/v1/alerts")
    class OpenAlerts(View):
        @guarded
        async def get(self, request: Request) -> Response:
            return self.json(api.open_alerts(access.caller(request)))

    @app.page("/v1/alerts/stream")
    class AlertStream(View):
        @guarded
        async def get(self, request: Request) -> Any:
            return await api.stream(request, access.caller(request))

    @app.page("/v1/alerts/{alert_id}/ack")
    class Acknowledge(View):
        @guarded
        async def post(self, request: Request, alert_id: str) -> Response:
            return await api.act(self, request, alert_id, "ack")

    @app.page("/v1/alerts/{alert_id}/snooze")
    class Snooze(View):
        @guarded
        async def post(self, request: Request, alert_id: str) -> Response:
            return await api.act(self, request, alert_id, "snooze")

    @app.page("/v1/patients/{patient_id}/series")
    class PatientSeries(View):
        @guarded
        async def get(self, request: Request, patient_id: str) -> Response:
            return await api.series(self, request, patient_id)

    @app.page("/v1/me")
    class Me(View):
        @guarded
        async def get(self, request: Request) -> Response:
            user = access.caller(request)
            return self.json({**user.public(), "ward_choices": access.ward_choices(user)})

    @app.page("/v1/admin/users")
    class Users(View):
        @guarded
        async def get(self, request: Request) -> Response:
            access.role(request, Role.ADMIN)
            return self.json({"users": [u.public() for u in access.directory.users]})
