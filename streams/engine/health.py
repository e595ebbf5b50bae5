"""Liveness, readiness and monitoring status on the worker's web server.

- ``/health``: the process answers (liveness).
- ``/serving``: this pod can serve HTTP and publish (readiness for a load balancer): the
  broker is reachable and the worker's producer connected. A time-series database outage
  or a rebalance does **not** make it 503, so the pages and the gateway stay reachable
  exactly when alarms are documented to keep flowing; those show in its ``monitoring``
  list, in ``/ready``, the metrics and the pages' banner.
- ``/ready``: true only when the worker is assigned and recovered *and* monitoring works
  (``streams.monitoring``): broker reachable, database taking writes, the stream making
  progress. For people and tests, not for taking pods out of a Service.

A probe every ``HEALTH_INTERVAL_S`` updates that state and publishes the
``monitoring_degraded`` alert event when problems last ``stream.degraded_after_s``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import asdict
from typing import Any, Protocol, cast

import faust
import orjson
from faust.tables.manager import TableManager
from faust.web import Request, Response, View

from ..access.audit import seal_one
from ..access.signing import GENESIS, Keys
from ..monitoring import Monitor
from ..settings import BrokerProfile
from .metrics import Figures, consumer_lag
from .producer import RecordSink

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 2.0


class ChangelogTopic(Protocol):
    def get_topic_name(self) -> str: ...


def restart_clean(app: faust.App) -> None:
    """The embedded broker came back empty (memory only): start this process over, clean.

    Its topics, offsets and the tables' changelogs are gone, so nothing the worker holds
    can be made durable again; the same process is re-executed with its local tables
    removed, and Bedside's topics are created again at start."""
    log.critical(
        "the embedded broker restarted and forgot every topic, offset and changelog: this "
        "worker restarts clean (tables emptied, topics re-created; alarm states and windows "
        "from before are gone)"
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    shutil.rmtree(app.conf.tabledir, ignore_errors=True)
    os.execv(sys.executable, [sys.executable, *sys.argv])  # noqa: S606 - ourselves, again


def register_probes(app: faust.App, monitor: Monitor, stall_s: float, records: RecordSink) -> None:
    """``GET /serving``: this pod can serve HTTP and publish (the manifests' readiness)."""

    @app.page("/serving")
    async def serving(web: View, request: Request) -> Response:
        cannot = []
        if monitor.broker_down_since is not None:
            cannot.append("broker unreachable: alarms and actions cannot be published")
        if not records.connected:
            cannot.append("the worker's producer is not connected yet")
        body = {"serving": not cannot, "problems": cannot, "monitoring": monitor.problems(stall_s)}
        return web.json(body, status=503 if cannot else 200)


def register(
    app: faust.App,
    figures: Figures,
    keys: Keys,
    profile: BrokerProfile,
    changelog: ChangelogTopic | None,
) -> None:
    """Add ``GET /health`` (alive), ``/serving`` (can serve and publish), ``/ready``
    (assigned, recovered, monitoring works), ``/stats``. ``changelog``: the patient-window
    table's (the embedded broker's restart is seen by its absence)."""
    settings, monitor = figures.settings, figures.monitor
    records = RecordSink(settings.kafka)
    monitor.clients.append(records)
    app.service(records)  # type: ignore[arg-type]
    stall_s = settings.stream.degraded_after_s

    def sealed(event: dict[str, Any]) -> dict[str, Any]:
        """The worker's alarm on its own audit chain (opened, then resolved)."""
        if event["transition"] == "opened":
            monitor.audit_seq, monitor.audit_prev = 0, GENESIS
        monitor.audit_seq += 1
        done = seal_one(keys.audit, event, monitor.audit_seq, monitor.audit_prev)
        monitor.audit_prev = done["audit"]["hash"]
        return done

    @app.timer(interval=HEALTH_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def probe() -> None:
        """Broker reachable? Lag of the patient topics; the monitoring_degraded event."""
        present = await records.topics(HEALTH_INTERVAL_S)
        if present is not None:
            if monitor.broker_down_since is not None:
                log.warning("broker reachable again")
            monitor.broker_down_since = None
            if (
                profile is BrokerProfile.EMBEDDED
                and cast(TableManager, app.tables).recovery.completed.is_set()
                and changelog is not None
                and changelog.get_topic_name() not in present
            ):
                restart_clean(app)
        elif monitor.broker_down_since is None:
            monitor.broker_down_since = time.monotonic()
            log.error("broker unreachable: alarms cannot be published until it returns")
        lag = consumer_lag(app, settings.topics.patient_stream)
        monitor.lag = int(sum(value for _, value in lag))
        problems = monitor.problems(stall_s)
        event = monitor.transition(
            problems, settings.stream.degraded_after_s, settings.worker.app_id, time.time()
        )
        if event is not None:
            log.error("monitoring %s: %s", event["transition"], "; ".join(problems) or "ok")
            event = sealed(event)
            if monitor.broker_down_since is None:
                try:
                    await (await records.send(settings.topics.alerts, b"*", orjson.dumps(event)))
                except Exception as exc:  # noqa: BLE001 - /ready and the log still say it
                    log.warning("monitoring event not published (%s)", type(exc).__name__)

    register_probes(app, monitor, stall_s, records)
    register_status(app, figures)


def register_status(app: faust.App, figures: Figures) -> None:
    """``GET /health``, ``/stats`` and ``/ready``."""
    settings, monitor = figures.settings, figures.monitor
    stall_s = settings.stream.degraded_after_s

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok", "app": settings.worker.app_id})

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        body: dict[str, Any] = asdict(figures.ingest)
        # a Counter is a dict subclass: Faust's orjson refuses it
        body["dead_letters"] = dict(figures.ingest.dead_letters)
        body["records_stored"] = monitor.records_stored
        body["scoring"] = figures.scoring.describe()
        return web.json(body)

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        recovered = cast(TableManager, app.tables).recovery.completed.is_set()
        problems = monitor.problems(stall_s)
        body: dict[str, Any] = {
            "ready": bool(recovered and not app.rebalancing and not problems),
            "rebalancing": bool(app.rebalancing),
            "recovered": bool(recovered),
            "assigned_partitions": len(app.assignor.assigned_actives()),
            "problems": problems,
        }
        return web.json(body, status=200 if body["ready"] else 503)
