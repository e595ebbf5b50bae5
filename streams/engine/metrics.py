"""``GET /metrics``: the worker's figures in the Prometheus text format (version 0.0.4),
written by ``prometheus_client``.

Throughput and outcomes as counters (take ``rate()``), consumer lag per owned partition,
latencies as histograms (model calls, batches, the age of a batch's oldest record when its
alarms were out), dead letters by reason, open alarms by severity and the live alarm quality
of predictive lows. What is per patient (lag, open alarms) covers only the partitions this
worker owns, so the figures of all workers add up to the deployment's. Counters restart at
zero with the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..alerts.quality import QualityStats
from ..buckets import Buckets
from ..monitoring import Monitor
from ..processing.stats import IngestStats
from ..scoring.service import ModelScoring
from ..settings import Settings
from .alert_view import AlertView
from .broker import partition_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    """What ``/metrics`` and ``/stats`` read: the worker's counters and the parts that
    count (built once by the composition root, ``streams.worker``)."""

    settings: Settings
    ingest: IngestStats
    quality: QualityStats
    monitor: Monitor
    scoring: ModelScoring
    alerts: AlertView


def _names(samples: list[tuple[dict[str, Any], Any]]) -> list[str]:
    return sorted({name for labels, _ in samples for name in labels})


class Exposition:
    """The metric families of one scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def metric(
        self, name: str, kind: str, help_: str, samples: Iterable[tuple[dict[str, Any], float]]
    ) -> None:
        rows = list(samples)
        names = _names(rows)
        family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = family_type(f"bedside_{name}", help_, labels=names)
        for labels, value in rows:
            family.add_metric([str(labels.get(n, "")) for n in names], float(value))
        self.families.append(family)

    def histogram(
        self, name: str, help_: str, series: Iterable[tuple[dict[str, Any], Buckets]]
    ) -> None:
        rows = list(series)
        names = _names(rows)
        family = HistogramMetricFamily(f"bedside_{name}", help_, labels=names)
        for labels, buckets in rows:
            family.add_metric(
                [str(labels.get(n, "")) for n in names],
                buckets=[(le, float(n)) for le, n in buckets.cumulative()],
                sum_value=buckets.total,
            )
        self.families.append(family)

    def text(self) -> str:
        families = self.families

        class Scrape:
            def collect(self) -> Iterable[Metric]:
                return iter(families)

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Scrape())
        return generate_latest(registry).decode()


def consumer_lag(app: faust.App, topics: Iterable[str]) -> list[tuple[dict[str, Any], float]]:
    """highwater - next offset to read, per owned partition of ``topics`` (the patient
    stream's: changelogs are not lag) that has been read from (best effort)."""
    samples: list[tuple[dict[str, Any], float]] = []
    wanted = frozenset(topics)
    try:
        consumer = app.consumer
        for tp in sorted(app.assignor.assigned_actives()):
            if tp.topic not in wanted:
                continue
            read = consumer._read_offset.get(tp)  # type: ignore[attr-defined]  # no public copy
            highwater = consumer.highwater(tp)
            if highwater is None or read is None:  # not read yet: no position to measure
                continue
            position = read + 1
            labels = {"topic": tp.topic, "partition": tp.partition}
            samples.append((labels, max(0, highwater - position)))
    except Exception:  # noqa: BLE001 - metrics never break the worker
        log.debug("consumer lag unavailable", exc_info=True)
    return samples


def render(app: faust.App, figures: Figures) -> str:
    out = Exposition()
    stream_metrics(out, figures)
    health_metrics(out, app, figures)
    model_metrics(out, figures.scoring.calls.stats)
    alarm_metrics(out, figures, owned_partitions(app, figures.settings.topics.glucose))
    return out.text()


def stream_metrics(out: Exposition, figures: Figures) -> None:
    """Throughput and outcomes of the patient stream."""
    stats = figures.ingest
    out.metric("records_total", "counter", "Ingest records consumed.", [({}, stats.records)])
    out.metric("observations_total", "counter", "Observations decoded.", [({}, stats.observations)])
    out.metric(
        "observations_applied_total",
        "counter",
        "Observations by outcome in the window.",
        [
            ({"outcome": "inserted"}, stats.inserted),
            ({"outcome": "duplicate"}, stats.duplicates),
            ({"outcome": "late"}, stats.late),
        ],
    )
    out.metric(
        "state_writes_total",
        "counter",
        "Patient windows stored (one changelog record each).",
        [({}, stats.state_writes)],
    )
    out.metric(
        "state_bytes_total",
        "counter",
        "Bytes of patient windows stored (what the changelog carried).",
        [({}, stats.state_bytes)],
    )
    out.metric(
        "dead_letters_total",
        "counter",
        "Records dead-lettered, by reason.",
        [({"reason": r}, n) for r, n in sorted(stats.dead_letters.items())],
    )
    out.metric("http_requests_total", "counter", "Gateway requests.", [({}, stats.http_requests)])
    out.metric(
        "rerouted_total",
        "counter",
        "Records republished to their patient's partition.",
        [({}, stats.rerouted)],
    )
    out.metric(
        "alert_events_total", "counter", "Alarm transitions published.", [({}, stats.alerts)]
    )
    out.metric(
        "alert_actions_total",
        "counter",
        "Care-team actions on alarms.",
        [({"result": "applied"}, stats.actions), ({"result": "ignored"}, stats.actions_ignored)],
    )
    out.metric("ticks_total", "counter", "Clock ticks processed.", [({}, stats.ticks)])
    out.histogram(
        "batch_seconds",
        "Time to process a batch of the patient stream.",
        [({}, stats.batch_seconds)],
    )
    out.histogram(
        "record_age_seconds",
        "Per batch, the age of its oldest record (since its producer wrote it) when the batch's "
        "alarms were published: produce to alarm.",
        [({}, stats.record_age_seconds)],
    )


def health_metrics(out: Exposition, app: faust.App, figures: Figures) -> None:
    """Is monitoring working: lag, contained faults, the database, the degraded flag."""
    stats, monitor = figures.ingest, figures.monitor
    sink = monitor.sink
    out.metric(
        "consumer_lag",
        "gauge",
        "Records not yet read, per owned partition of the patient topics.",
        consumer_lag(app, figures.settings.topics.patient_stream),
    )
    out.metric(
        "processing_errors_total",
        "counter",
        "Records or actions whose application failed (dead-lettered, worker kept running).",
        [({}, stats.processing_errors)],
    )
    out.metric(
        "quarantined_states_total",
        "counter",
        "Patient states that could not be used (dead-lettered, reset, monitoring_fault).",
        [({}, stats.quarantined)],
    )
    out.metric(
        "view_records_skipped_total",
        "counter",
        "Records of the alerts and risk topics the views refused (not JSON, not the event "
        "schema, or failed to apply): logged by coordinates, skipped.",
        [
            ({"view": type(client).__name__}, skipped)
            for client in monitor.clients
            if isinstance(skipped := getattr(client, "skipped", None), int)
        ],
    )
    out.metric(
        "http_unavailable_total",
        "counter",
        "Gateway requests answered 503 (the broker took no write).",
        [({}, stats.http_unavailable)],
    )
    out.metric(
        "sink_write_failures_total",
        "counter",
        "Failed time-series writes (each retried).",
        [({}, sink.write_failures if sink is not None else 0)],
    )
    for name, help_ in (
        ("points_refused", "Points the time-series database refused for good (dead-lettered)."),
        ("points_outside_retention", "Points older than the retention, not written."),
    ):
        count = getattr(sink, name, 0) if sink is not None else 0
        out.metric(f"series_{name}_total", "counter", help_, [({}, count)])
    out.metric(
        "sink_unstored_points",
        "gauge",
        "Points computed but not yet accepted by the time-series database.",
        [({}, monitor.unstored_points)],
    )
    problems = monitor.problems(figures.settings.stream.degraded_after_s)
    out.metric(
        "monitoring_degraded",
        "gauge",
        "1 while monitoring is degraded (see /ready for the problems).",
        [({}, 1 if problems else 0)],
    )


def model_metrics(out: Exposition, batches: dict[str, Any]) -> None:
    """Model calls per model: windows, calls, their latency, errors."""
    out.metric(
        "model_windows_total",
        "counter",
        "Windows scored, per model.",
        [({"model": k}, s.windows) for k, s in batches.items()],
    )
    out.metric(
        "model_calls_total",
        "counter",
        "Model calls (batches), per model.",
        [({"model": k}, s.calls) for k, s in batches.items()],
    )
    out.histogram(
        "model_call_seconds",
        "Latency of model calls, per model.",
        [({"model": k}, s.buckets) for k, s in batches.items()],
    )
    out.metric(
        "model_errors_total",
        "counter",
        "Failed model calls.",
        [({"model": k}, s.errors) for k, s in batches.items()],
    )


def owned_partitions(app: faust.App, topic: str) -> set[int]:
    """The partitions of ``topic`` this worker owns now (empty before an assignment)."""
    try:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    except Exception:  # noqa: BLE001 - metrics never break the worker
        return set()


def alarm_metrics(out: Exposition, worker: Figures, owned: set[int] | None = None) -> None:
    """Open alarms by severity (of the patients on ``owned`` partitions; every one when None)
    and the live quality of predictive lows."""
    partitions = worker.settings.topics.partitions
    by_severity = dict.fromkeys(("info", "warning", "urgent", "critical"), 0)
    for event in worker.alerts.open.values():
        patient = str(event["patient_id"])
        if patient == "*" or (
            owned is not None and partition_of(patient.encode(), partitions) not in owned
        ):
            continue  # a worker's own monitoring alarm, or another worker's patient
        by_severity[event["severity"]] = by_severity.get(event["severity"], 0) + 1
    out.metric(
        "open_alerts",
        "gauge",
        "Open (unresolved) alarms of the patients on this worker's partitions: the sum over "
        "workers is the deployment's.",
        [({"severity": k}, v) for k, v in sorted(by_severity.items())],
    )
    figures = worker.quality.figures()
    kind = {"kind": "predicted_low"}
    for name, help_ in (
        ("precision", "Share of judged predictive alarms followed by a low within 30 min."),
        ("recall", "Share of low events warned 0-30 min ahead."),
        ("false_per_patient_day", "False predictive alarms per patient-day of CGM."),
        ("median_lead_min", "Median warning time before low events, minutes."),
    ):
        value = figures[name]
        out.metric(f"alarm_{name}", "gauge", help_, [(kind, value)] if value is not None else [])
    out.metric(
        "alarm_judged_total",
        "counter",
        "Predictive alarms judged against the truth.",
        [(kind, figures["predictions_judged"] or 0)],
    )


def register(app: faust.App, figures: Figures) -> None:
    """Add ``GET /metrics``."""

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.text(render(app, figures), content_type="text/plain; version=0.0.4")
