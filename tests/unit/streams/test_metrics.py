"""``/metrics`` as Prometheus reads it: valid exposition, histograms that add up, and per-patient
figures that cover only the worker's own partitions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from streams.alerts.quality import QualityStats
from streams.buckets import Buckets
from streams.engine.metrics import Exposition, alarm_metrics
from streams.settings import get_settings


def test_buckets_are_cumulative_with_count_and_sum() -> None:
    b = Buckets(bounds=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        b.observe(value)
    assert b.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert b.count == 4 and b.total == 3.65


def parsed(out: Exposition) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(out.text())}


def test_the_exposition_parses_and_a_histogram_has_its_count_and_sum() -> None:
    out = Exposition()
    out.metric("records_total", "counter", "Records.", [({}, 12)])
    out.metric("dead_letters_total", "counter", "By reason.", [({"reason": 'a"b\\nc'}, 1)])
    latency = Buckets()
    latency.observe(0.003)
    latency.observe(0.2)
    out.histogram("model_call_seconds", "Latency.", [({"model": "glucose@2.3.0"}, latency)])
    families = parsed(out)
    assert families["bedside_records"].type == "counter"
    [letters] = families["bedside_dead_letters"].samples
    assert letters.labels == {"reason": 'a"b\\nc'}  # escaped on the way out, intact back
    samples = {
        (s.name, s.labels.get("le")): s.value
        for s in families["bedside_model_call_seconds"].samples
    }
    assert samples[("bedside_model_call_seconds_count", None)] == 2
    assert samples[("bedside_model_call_seconds_sum", None)] == 0.203
    assert samples[("bedside_model_call_seconds_bucket", "+Inf")] == 2
    assert samples[("bedside_model_call_seconds_bucket", "0.005")] == 1


def test_open_alarms_count_only_the_patients_of_owned_partitions() -> None:
    """Two workers, each owning half the partitions: their open_alerts add up to every open
    alarm once (the worker's own monitoring alarm is left to monitoring_degraded)."""
    settings = get_settings()
    partitions = list(range(settings.topics.partitions))
    patients = [f"p-{i}" for i in range(40)]
    open_ = {f"a-{p}": {"patient_id": p, "severity": "warning"} for p in patients}
    open_["m"] = {"patient_id": "*", "severity": "critical"}
    figures: Any = SimpleNamespace(
        settings=settings, alerts=SimpleNamespace(open=open_), quality=QualityStats()
    )
    counted = []
    for owned in ({p for p in partitions if p % 2 == 0}, {p for p in partitions if p % 2 == 1}):
        out = Exposition()
        alarm_metrics(out, figures, owned)
        family = parsed(out)["bedside_open_alerts"]
        counted.append({s.labels["severity"]: s.value for s in family.samples})
    assert counted[0]["warning"] + counted[1]["warning"] == len(patients)
    assert counted[0]["critical"] == counted[1]["critical"] == 0
    first = {
        p for p in patients if DefaultPartitioner()(p.encode(), partitions, partitions) % 2 == 0
    }
    assert counted[0]["warning"] == len(first)
