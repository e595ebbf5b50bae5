"""The Faust app factory: nothing connects to anything until a worker starts."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faust

from .. import logsafe
from ..runtime import Runtime, tune_gc
from ..settings import BrokerProfile, Settings
from . import consumer, embedded
from .broker import faust_credentials, resolve_profile

log = logging.getLogger(__name__)

#: One part of a worker: adds its agents, timers, services and web views to the app.
Part = Callable[[faust.App, Settings, Runtime], None]


def worker_parts() -> tuple[Part, ...]:
    """What a Bedside worker runs, in start order: health first (its /ready answers while
    the rest starts), the patient stream, the HTTP gateway, patient and alarm endpoints, the
    ward and the care-team pages, metrics last (it reads what the others registered)."""
    from ..http import alarms, gateway, patients, ward
    from . import health, metrics, stream

    return (
        health.register,
        stream.register,
        gateway.register,
        patients.register,
        alarms.register,
        ward.register,
        metrics.register,
    )


def faust_options(settings: Settings, profile: BrokerProfile) -> dict[str, Any]:
    """Keyword arguments for :class:`faust.App` under the given (resolved) broker profile."""
    if profile is BrokerProfile.AUTO:
        msg = "resolve the broker profile before building the app (broker.resolve_profile)"
        raise ValueError(msg)
    consumer.check_consumer_internals()
    # both transports are Faust's aiokafka one with batch delivery (streams.engine.consumer)
    scheme = (
        embedded.TRANSPORT_SCHEME
        if profile is BrokerProfile.EMBEDDED
        else consumer.TRANSPORT_SCHEME
    )
    options: dict[str, Any] = {
        "broker": [f"{scheme}://{server}" for server in settings.kafka.servers],
        "broker_credentials": faust_credentials(settings.kafka),
        "store": f"{settings.worker.store}://",
        "datadir": str(settings.worker.data_dir),
        "topic_partitions": settings.topics.partitions,
        "topic_replication_factor": settings.topics.replication_factor,
        "web_bind": settings.web.host,
        "web_host": settings.web.host,
        "web_port": settings.web.port,
        "autodiscover": False,
        # Faust's own views (/router, /table/{name}/{key}, /graph, /stats, /performance)
        # answer without any token and show table contents: off
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        # a batch of the patient stream is what one fetch returns, up to this many records
        "broker_max_poll_records": settings.ingest.batch_size,
    }
    web = settings.web
    if web.tls_certfile is not None and web.tls_keyfile is not None:
        options["web_ssl_context"] = server_tls(web.tls_certfile, web.tls_keyfile)
    if profile is BrokerProfile.EMBEDDED:
        embedded.check_faust_internals()
        options.update(embedded.EMBEDDED_PROFILE.faust_options())
    return options


def server_tls(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The web server's TLS: TLS 1.2 or later, the given certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def create_app(
    settings: Settings,
    *,
    profile: BrokerProfile | None = None,
    parts: Sequence[Part] | None = None,
    runtime: Runtime | None = None,
) -> faust.App:
    """Build the Bedside Faust app with its parts registered (``worker_parts()`` unless
    given: tests and benchmarks build apps with fewer).

    ``profile`` defaults to the settings' profile; ``auto`` asks the broker for its cluster id.
    """
    chosen = profile or settings.kafka.profile
    if chosen is BrokerProfile.AUTO:
        chosen = resolve_profile(settings.kafka)
    app = faust.App(settings.worker.app_id, **faust_options(settings, chosen))
    runtime = runtime or Runtime(settings)
    runtime.profile = chosen
    for register in worker_parts() if parts is None else parts:
        register(app, settings, runtime)
    log.info("app %s built with the %s broker profile", settings.worker.app_id, chosen.value)
    return app


def run_worker(app: faust.App, loglevel: str, *, debug_libraries: bool = False) -> None:
    """Run ``app`` as a Faust worker until it is stopped.

    Without the terminal spinner: Faust's worker sets the root logger to DEBUG so that every
    log record turns it, which makes every ``log.debug`` in Faust and aiokafka build a record
    (~5 % of the patient stream's CPU when measured)."""
    from faust.worker import Worker

    class BedsideWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logsafe.limit_repeats(logger.handlers)

    logsafe.install(loglevel, debug_libraries=debug_libraries)
    tune_gc()
    worker = BedsideWorker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
