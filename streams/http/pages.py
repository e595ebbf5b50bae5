"""The care-team pages and the ward's data: one row per patient, live.

- ``GET /ui``: the ward view; ``GET /ui/patients/{patient_id}``: a patient's page;
  ``GET /ui/static/{name}``: their script, style and the vendored chart library (uPlot);
- ``GET /v1/ward[?ward=W]``: a row per patient of the user's wards, or of ward ``W`` of
  theirs (``streams.ward_rows``), with its open alarms;
- ``GET /v1/ward/stream[?ward=W | ?patient=ID]``: server-sent events: ``alert`` (each
  transition, as it arrives) and ``rows`` (the rows that changed, at most one message a
  second), of the user's wards, one ward of theirs, or one patient of theirs (its page);
- ``GET /v1/patients/{patient_id}/alerts``: the patient's recent transitions, who acted.

Request budget of an open page: on load ``/v1/me``, ``/v1/ward`` (or the patient's row and
history) and one ``/series`` per chart; then only the event stream and ``/ready`` every 5 s.
Charts append the points the rows bring; a chart reloads its series only when the stream
was lost (``reload``) or a new patient appears.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from ..access.users import User
from .guard import PAGE_HEADERS
from .ports import AlarmBoard, WardBoard
from .signin import Access, guarded
from .sse import event_stream

STATIC = {
    "bedside.js": "text/javascript",
    "bedside.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
}


def web_file(name: str) -> bytes:
    folder = resources.files("streams") / "web"
    path = folder / "vendor" / name if name.startswith("uPlot") else folder / name
    return path.read_bytes()


class WardApi:
    """The ward routes' work (routes: :func:`register`)."""

    def __init__(
        self, ward: WardBoard, alerts: AlarmBoard, access: Access, stream_max_s: float = 3600.0
    ) -> None:
        self.ward, self.alerts, self.access = ward, alerts, access
        self.stream_max_s = stream_max_s

    def shows(
        self, user: User, ward: str | None, patient: str | None = None
    ) -> Callable[[str], bool]:
        """Whether a patient belongs on ``user``'s page, narrowed to ``ward`` or to one
        ``patient`` (both already checked to be the user's) if given."""
        access = self.access
        if patient is not None:
            return lambda other: other == patient
        if ward is None:
            return lambda other: access.sees(user, other)
        return lambda other: access.ward_of(other) == ward

    def rows(self, user: User, ward: str | None = None) -> dict[str, Any]:
        """A row per visible patient with its open alarms (``GET /v1/ward``)."""
        access, shows = self.access, self.shows(user, ward)
        open_alarms: dict[str, list[dict[str, Any]]] = {}
        for event in self.alerts.open.values():
            if shows(event["patient_id"]):
                open_alarms.setdefault(event["patient_id"], []).append(access.shown(user, event))
        rows = [
            access.named({**row, "alarms": open_alarms.pop(pid, [])})
            for pid, row in self.ward.rows.items()
            if shows(pid)
        ]
        # patients with an alarm but no risk event in memory still get a row
        rows += [
            access.named({"patient_id": pid, "alarms": found}) for pid, found in open_alarms.items()
        ]
        return {"patients": rows, "connected": self.ward.connected}

    async def stream(
        self, request: Request, user: User, ward: str | None = None, patient: str | None = None
    ) -> Any:
        """``alert`` and ``rows`` events of the user's wards (``GET /v1/ward/stream``)."""
        access, shows = self.access, self.shows(user, ward, patient)

        def render(item: dict[str, Any]) -> list[tuple[str | None, bytes]]:
            if "rows" in item:
                rows = [access.named(r) for r in item["rows"] if shows(r["patient_id"])]
                return [("rows", orjson.dumps(rows))] if rows else []
            if not shows(item["patient_id"]):
                return []
            return [("alert", orjson.dumps(access.shown(user, item)))]

        sources = [self.alerts.subscribers, self.ward.subscribers]
        return await event_stream(
            request,
            sources,
            render,
            still_allowed=lambda: access.still(user),
            max_s=self.stream_max_s,
        )

    def patient(self, user: User, patient_id: str) -> dict[str, Any]:
        """The patient's row and recent transitions (``GET /v1/patients/{id}/alerts``)."""
        history = [self.access.shown(user, e) for e in self.alerts.history.get(patient_id, ())]
        row = self.ward.rows.get(patient_id)
        return {
            **self.access.named({"patient_id": patient_id}),
            "row": row and self.access.named(row),
            "transitions": history,
        }


def web_page(name: str) -> str:
    """A page of ``streams/web`` (its HTML)."""
    return web_file(name).decode()


def register(app: faust.App, api: WardApi) -> None:
    """Add the ward routes and the care-team pages (``api``: what they use)."""
    access = api.access
    pages = {name: web_file(name).decode() for name in ("ward.html", "patient.html")}
    static = {name: web_file(name) for name in STATIC}

    @app.page("/v1/ward")
    class Ward(View):
        @guarded
        async def get(self, request: Request) -> Response:
            user = access.caller(request)
            return self.json(api.rows(user, access.ward_filter(request, user)))

    @app.page("/v1/ward/stream")
    class WardStream(View):
        @guarded
        async def get(self, request: Request) -> Any:
            patient = request.query.get("patient")
            if patient is not None:  # a patient's page: that patient only, if theirs
                user = access.patient(request, patient)
                return await api.stream(request, user, patient=patient)
            user = access.caller(request)
            return await api.stream(request, user, access.ward_filter(request, user))

    @app.page("/v1/patients/{patient_id}/alerts")
    class PatientAlerts(View):
        @guarded
        async def get(self, request: Request, patient_id: str) -> Response:
            return self.json(api.patient(access.patient(request, patient_id), patient_id))

    @app.page("/ui")
    class WardPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(pages["ward.html"], headers=PAGE_HEADERS)

    @app.page("/ui/patients/{patient_id}")
    class PatientPage(View):
        async def get(self, request: Request, patient_id: str) -> Response:
            return self.html(pages["patient.html"], headers=PAGE_HEADERS)

    @app.page("/ui/static/{name}")
    class Static(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in STATIC:
                return self.json({"error": "not_found", "detail": f"no file {name}"}, status=404)
            headers = {**PAGE_HEADERS, "Cache-Control": "max-age=3600"}
            return self.bytes(static[name], content_type=STATIC[name], headers=headers)
