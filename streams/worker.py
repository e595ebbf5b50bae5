"""The worker, wired: the one composition root of a Bedside worker.

Everything a worker shares is built here, once, before anything is registered, and handed
to each part explicitly: nothing is looked up later, nothing is filled in start order.

    worker (this module)
      ├── engine/   the Faust adapter: app, patient stream, views of the output topics,
      │             health, metrics
      ├── http/     routes: gateway, Nightscout, alarms, pages, patient window
      └── the core  processing/ (the per-patient core) over alerts/, scoring/, windows/,
                    rules/, ingest/, schemas/, access/, sinks/, patients, settings

The engine never imports HTTP and HTTP never imports the engine (``http/ports.py`` says
what the routes are handed); ``tests/unit/test_structure.py`` holds the rooms free of
import cycles.
"""

from __future__ import annotations

from .access.pseudonyms import Pseudonyms
from .access.signing import Keys
from .engine import health, metrics, stream
from .engine.alert_view import AlertView
from .engine.app import App, chosen_profile, create_app
from .engine.producer import RecordSink
from .engine.risk_view import WardView
from .http import alarm_routes, gateway, nightscout, oidc, openapi, pages, patient_window
from .http.guard import PAGE_HEADERS
from .http.signin import Access
from .monitoring import Monitor
from .patients import PatientDirectory
from .processing.batch import StepCounters
from .scoring.service import ModelScoring
from .settings import BrokerProfile, Settings
from .sinks.reader import SeriesReader


def patient_directory(settings: Settings) -> PatientDirectory:
    """Every per-patient setting, keyed as windows are (pseudonyms when ids are)."""
    privacy = settings.privacy
    pseudonyms = (
        Pseudonyms(privacy.key.get_secret_value())
        if privacy.pseudonymise and privacy.key is not None
        else None
    )
    return PatientDirectory.from_settings(settings.stream, pseudonyms)


def signing_keys(settings: Settings) -> Keys:
    secret = settings.security.signing_key
    return Keys.derive(secret.get_secret_value() if secret else None)


def create_worker(settings: Settings, profile: BrokerProfile | None = None) -> App:
    """The Bedside worker's app: health first (its /ready answers while the rest starts),
    the patient stream, the HTTP gateway and Nightscout's routes, the patient window,
    alarms, the ward and the care-team pages, metrics."""
    chosen = chosen_profile(settings, profile)
    app = create_app(settings, chosen)
    keys, patients = signing_keys(settings), patient_directory(settings)
    monitor = Monitor()
    alerts = AlertView(settings.kafka, settings.topics.alerts)
    ward = WardView(settings.kafka, settings.topics.risk)
    records = RecordSink(settings.kafka)  # what HTTP publishes: observations and actions
    counters = StepCounters()
    figures = metrics.Figures(
        settings,
        counters.ingest,
        counters.quality,
        monitor,
        ModelScoring(settings.scoring),
        alerts,
    )
    windows = stream.windows_table(app, settings)
    health.register(app, figures, keys, chosen, windows.changelog_topic)
    parts = stream.StreamParts(keys, patients, figures.scoring, monitor, counters)
    stream.register(app, settings, windows, parts)
    for service in (records, alerts, ward):
        monitor.clients.append(service)
        app.service(service)  # type: ignore[arg-type]  # an instance is accepted too
    access = Access(settings, patients)
    provider = None
    if access.tokens is not None:
        provider = oidc.IdentityProvider(settings.oidc, access.tokens)
        access.unknown_key = provider.refresh_soon
    oidc.register(app, provider, settings.web, pages.web_page("signin.html"))
    intake = gateway.Gateway(settings, records, monitor, patients, figures.ingest)
    reader = SeriesReader(settings.influx)
    gateway.register(app, intake)
    nightscout.register(app, nightscout.NightscoutApi(intake, reader))
    patient_window.register(app, access, windows)
    alarm_routes.register(
        app, alarm_routes.AlarmsApi(settings, access, keys, monitor, alerts, records, reader)
    )
    pages.register(app, pages.WardApi(ward, alerts, access, settings.web.stream_max_s))
    metrics.register(app, figures)
    openapi.register(app, settings, PAGE_HEADERS)
    return app
