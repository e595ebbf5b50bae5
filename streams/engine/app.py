"""The Faust app factory and the worker process: nothing connects to anything until a worker
starts. What a Bedside worker registers on the app is wired in ``streams.worker``."""

from __future__ import annotations

import gc
import logging
import ssl
from pathlib import Path
from typing import Any

import faust

from .. import logsafe
from ..settings import BrokerProfile, Settings
from . import consumer, embedded
from .broker import faust_credentials, resolve_profile

log = logging.getLogger(__name__)

App = faust.App  # the type of a worker's app, for the composition root (streams.worker)


class UnsupportedGuaranteeError(ValueError):
    """The processing guarantee asked for needs what the broker does not have."""


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
        # a dead worker's patients wait this long for another worker (Faust's default, 60 s,
        # left them unwatched for a minute); the embedded profile sets its own
        "broker_session_timeout": settings.kafka.session_timeout_s,
        "broker_heartbeat_interval": settings.kafka.session_timeout_s / 3,
    }
    web = settings.web
    if web.tls_certfile is not None and web.tls_keyfile is not None:
        options["web_ssl_context"] = server_tls(web.tls_certfile, web.tls_keyfile)
    if profile is BrokerProfile.EMBEDDED:
        if settings.kafka.processing_guarantee == "exactly_once":
            msg = (
                "BEDSIDE_KAFKA__PROCESSING_GUARANTEE=exactly_once needs Kafka transactions, "
                "which the embedded broker does not have: use at_least_once there"
            )
            raise UnsupportedGuaranteeError(msg)
        embedded.check_faust_internals()
        options.update(embedded.EMBEDDED_PROFILE.faust_options())
    else:
        # exactly_once: Faust's transactional producers, one per owned partition; commits
        # are taken by the patient stream between batches (streams.engine.consumer)
        options["processing_guarantee"] = settings.kafka.processing_guarantee
    return options


def server_tls(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The web server's TLS: TLS 1.2 or later, the given certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def chosen_profile(settings: Settings, profile: BrokerProfile | None = None) -> BrokerProfile:
    """``profile``, else the settings' one; ``auto`` asks the broker for its cluster id."""
    chosen = profile or settings.kafka.profile
    return resolve_profile(settings.kafka) if chosen is BrokerProfile.AUTO else chosen


def create_app(settings: Settings, profile: BrokerProfile | None = None) -> faust.App:
    """A Faust app with nothing registered on it (``streams.worker.create_worker`` builds the
    Bedside worker on one; tests build apps with fewer parts)."""
    chosen = chosen_profile(settings, profile)
    app = faust.App(settings.worker.app_id, **faust_options(settings, chosen))
    log.info("app %s built with the %s broker profile", settings.worker.app_id, chosen.value)
    if settings.kafka.processing_guarantee == "exactly_once":
        log.warning(
            "exactly_once is experimental: alarms reach read_committed consumers only once "
            "their batch is stored and committed (while the time-series database is away, only "
            "the pages and read_uncommitted consumers get them), and after a worker takeover a "
            "committed reader has seen an alarm twice (operations.md#exactly-once-on-kafka)"
        )
    return app


#: Young-generation threshold of the cyclic garbage collector in a worker. The stream
#: allocates a few hundred objects per event and frees nearly all of them by reference
#: counting; at Python's default (700) the collector ran every few events and, with many
#: patients' windows alive, took 15-25 % of a sparse-regime batch in process (124 -> 106
#: us/event with this threshold, 90 with the collector off; a worker on the embedded stack
#: gained a further 7 % with it off).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect young objects less often and leave what start-up built out of every collection."""
    gc.collect()
    gc.freeze()  # modules, settings, models: never garbage, never scanned again
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def run_worker(
    app: faust.App, loglevel: str, *, debug_libraries: bool = False, log_format: str = "text"
) -> None:
    """Run ``app`` as a Faust worker until it is stopped.

    Without the terminal spinner: Faust's worker sets the root logger to DEBUG so that every
    log record turns it, which makes every ``log.debug`` in Faust and aiokafka build a record
    (~5 % of the patient stream's CPU when measured)."""
    from faust.worker import Worker

    class BedsideWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logsafe.limit_repeats(logger.handlers)
            if log_format == "json":
                logsafe.use_json(logger.handlers)

    logsafe.install(loglevel, debug_libraries=debug_libraries)
    tune_gc()
    worker = BedsideWorker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
