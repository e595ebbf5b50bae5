"""Liveness and readiness endpoints on the worker's web server (probes for k8s and the stack)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.web import Request, Response, View

from ..runtime import Runtime
from ..settings import Settings


def register(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    """Add ``GET /health`` (alive), ``GET /ready`` (assigned, recovered), ``GET /stats``."""

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok", "app": settings.worker.app_id})

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        body: dict[str, Any] = asdict(runtime.ingest)
        # a Counter is a dict subclass: Faust's orjson refuses it
        body["dead_letters"] = dict(runtime.ingest.dead_letters)
        if runtime.scoring is not None:
            body["scoring"] = runtime.scoring.describe()
        return web.json(body)

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        recovered = cast(TableManager, app.tables).recovery.completed.is_set()
        body: dict[str, Any] = {
            "ready": bool(recovered and not app.rebalancing),
            "rebalancing": bool(app.rebalancing),
            "recovered": bool(recovered),
            "assigned_partitions": len(app.assignor.assigned_actives()),
        }
        return web.json(body, status=200 if body["ready"] else 503)
