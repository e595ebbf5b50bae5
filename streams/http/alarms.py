"""Alarms over HTTP and the care-team page.

- ``GET /v1/alerts``: open alarms (every patient, from the worker's alert view);
- ``GET /v1/alerts/stream``: the same, live, as server-sent events (one per transition);
- ``POST /v1/alerts/{alert_id}/ack`` and ``/snooze`` (body ``{"by": ..., "minutes": ...}``):
  publishes the action to ``alert-acks`` keyed by the patient and answers 202 once the broker
  has it; the ``acknowledged`` / ``snoozed`` transition follows on the alerts topic. Unknown
  ids: 404; resolved ones: 409;
- ``GET /v1/patients/{patient_id}/series?hours=6``: glucose and vitals read back from the
  time-series server (sparklines);
- ``GET /ui``: the care-team page (static; its data calls carry the bearer token).

Bearer token as for the gateway; ``EventSource`` cannot send headers, so the stream also
accepts ``?token=``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from importlib import resources
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from pydantic import ValidationError

from ..alerts.actions import AlertAction
from ..engine.alert_view import DROPPED, AlertView
from ..engine.producer import RecordSink
from ..runtime import Runtime
from ..settings import Settings
from ..sinks.reader import SeriesReader
from .gateway import bearer_ok
from .guard import PAGE_HEADERS, refusal

SEVERITY_RANK = {"critical": 0, "urgent": 1, "warning": 2, "info": 3}
SSE_KEEPALIVE_S = 15


class AlarmsApi:
    """The alarm routes' work (routes: :func:`register`)."""

    def __init__(
        self, settings: Settings, view: AlertView, records: RecordSink, reader: SeriesReader
    ) -> None:
        self.settings, self.view, self.records, self.reader = settings, view, records, reader
        web = settings.web
        self.token = web.token.get_secret_value().encode() if web.token else None

    def token_ok(self, request: Request) -> bool:
        if bearer_ok(request, self.token):
            return True
        given = request.query.get("token", "").encode()
        return self.token is not None and hmac.compare_digest(given, self.token)

    def open_alerts(self) -> dict[str, Any]:
        alerts = sorted(
            self.view.open.values(),
            key=lambda e: (SEVERITY_RANK.get(e["severity"], 9), e["opened_at"]),
        )
        return {"open": alerts, "events_seen": self.view.events}

    async def stream(self, request: Request) -> aioweb.StreamResponse:
        """Every new transition as a server-sent event; ends when the page falls behind."""
        queue = self.view.subscribe()
        response = aioweb.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)  # type: ignore[arg-type]
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is DROPPED:  # fell behind: end the stream, the page reloads
                    await response.write(b"event: reload\ndata: {}\n\n")
                    break
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.view.subscribers.discard(queue)
        return response

    async def act(self, web: View, request: Request, alert_id: str, action: str) -> Response:
        if not self.token_ok(request):
            return web.json({"error": "unauthorized"}, status=401)
        raw = await request.read()
        refused = refusal(request, self.settings.web, has_body=bool(raw.strip()))
        if refused is not None:
            return web.json({"error": "refused", "detail": refused[1]}, status=refused[0])
        event = self.view.get(alert_id)
        if event is None:
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
                by=str(body.get("by") or "web"),
                minutes=int(body.get("minutes") or 30),
            )
        except (orjson.JSONDecodeError, ValidationError, ValueError, TypeError, AttributeError):
            return web.json(
                {"error": "invalid", "detail": 'expected {"by": ..., "minutes": ...}'}, status=400
            )
        sent = await self.records.send(
            self.settings.topics.alert_acks,
            command.patient_id.encode(),
            command.model_dump_json().encode(),
        )
        await sent  # the broker has it
        return web.json({"status": "accepted", **command.model_dump()}, status=202)

    async def series(self, web: View, request: Request, patient_id: str) -> Response:
        try:
            hours = min(max(float(request.query.get("hours", "6")), 0.25), 72.0)
        except ValueError:
            return web.json({"error": "invalid", "detail": "hours: a number"}, status=400)
        end = int(time.time() * 1000) + 300_000
        start = end - int(hours * 3_600_000)
        try:
            glucose = await self.reader.series(patient_id, "glucose", start, end)
            vitals = await self.reader.series(patient_id, "vitals", start, end)
        except Exception as error:  # noqa: BLE001 - the page degrades, the stream is fine
            return web.json({"error": "unavailable", "detail": type(error).__name__}, status=503)
        return web.json({"patient_id": patient_id, "glucose": glucose, "vitals": vitals})


def register(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    view = AlertView(settings.kafka, settings.topics.alerts)
    records = RecordSink(settings.kafka)
    runtime.monitor.clients += [records, view]
    app.service(view)  # type: ignore[arg-type]
    app.service(records)  # type: ignore[arg-type]
    runtime.alert_view = view
    api = AlarmsApi(settings, view, records, SeriesReader(settings.influx))
    page = (resources.files("streams") / "web" / "ui.html").read_text(encoding="utf-8")
    unauthorized = {"error": "unauthorized"}

    @app.page("/v1/alerts")
    class OpenAlerts(View):
        async def get(self, request: Request) -> Response:
            if not api.token_ok(request):
                return self.json(unauthorized, status=401)
            return self.json(api.open_alerts())

    @app.page("/v1/alerts/stream")
    class AlertStream(View):
        async def get(self, request: Request) -> Any:
            if not api.token_ok(request):
                return self.json(unauthorized, status=401)
            return await api.stream(request)

    @app.page("/v1/alerts/{alert_id}/ack")
    class Acknowledge(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await api.act(self, request, alert_id, "ack")

    @app.page("/v1/alerts/{alert_id}/snooze")
    class Snooze(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await api.act(self, request, alert_id, "snooze")

    @app.page("/v1/patients/{patient_id}/series")
    class PatientSeries(View):
        async def get(self, request: Request, patient_id: str) -> Response:
            if not api.token_ok(request):
                return self.json(unauthorized, status=401)
            return await api.series(self, request, patient_id)

    @app.page("/ui")
    class CareTeamPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(page, headers=PAGE_HEADERS)
