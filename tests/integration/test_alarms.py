"""Alarms on the real stack: the alert view, acknowledgements (HTTP, topic), SSE.

The pages in a browser: test_pages.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from care_team import NURSE, SIGNING_KEY
from prometheus_client.parser import text_string_to_metric_families
from stream_helpers import produce, read_topic, send_raw
from stream_helpers import recent_cgm as cgm

from streams.access.signing import Keys, action_signature
from streams.settings import Settings

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)

TOKEN = NURSE  # nurse-general: patients without a ward in the settings file are "general"


def falling_to_low(patient: str) -> list[dict[str, Any]]:
    return [cgm(patient, 15 - 5 * i, v) for i, v in enumerate([110, 66, 62, 60])]


def call(
    worker: Any,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = TOKEN,
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{worker.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **({"Content-Type": "application/json"} if body is not None else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def open_alert(worker: Any, patient: str, kind: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(worker, "GET", "/v1/alerts")
        assert status == 200
        for alert in body["open"]:
            if alert["patient_id"] == patient and alert["kind"] == kind:
                return alert
        time.sleep(0.5)
    raise AssertionError(f"no open {kind} alert for {patient} in {timeout} s")


@pytest.fixture(scope="module")
def worker(spawn_worker: Callable[..., Any]) -> Any:
    started = spawn_worker(BEDSIDE_SCORING__MODELS="[]", BEDSIDE_STREAM__TICK_INTERVAL_S="1")
    started.wait_ready()
    return started


def test_acknowledged_over_http_once_the_broker_has_it(
    worker: Any, stack_settings: Settings
) -> None:
    patient = f"ack-http-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(stack_settings, falling_to_low(patient)))
    alert = open_alert(worker, patient, "low")
    assert alert["transition"] == "opened" and "below" in alert["reason"]
    assert alert["evidence"]["recent_cgm"][-1]["mg_dl"] in (62, 60)
    assert (
        call(worker, "POST", f"/v1/alerts/{alert['alert_id']}/ack", {"by": "nurse-7"}, token=None)[
            0
        ]
        == 401
    )
    # "by" comes from the credential: a name in the body is ignored
    status, body = call(worker, "POST", f"/v1/alerts/{alert['alert_id']}/ack", {"by": "Dr. X"})
    assert status == 202 and body["patient_id"] == patient and body["by"] == "nurse-general"
    found = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.alerts,
            {patient},
            lambda f: any(e["transition"] == "acknowledged" for e in f[patient]),
        )
    )
    ack = next(e for e in found[patient] if e["transition"] == "acknowledged")
    assert (ack["alert_id"], ack["by"], ack["state"]) == (
        alert["alert_id"],
        "nurse-general",
        "acknowledged",
    )
    assert open_alert(worker, patient, "low")["state"] in ("acknowledged", "open")


def test_unknown_ids_get_404_and_bad_bodies_400(worker: Any, stack_settings: Settings) -> None:
    status, body = call(worker, "POST", "/v1/alerts/0123456789abcdef01234567/ack", {})
    assert status == 404 and "no alert" in body["detail"]
    patient = f"ack-bad-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(stack_settings, falling_to_low(patient)))
    alert = open_alert(worker, patient, "low")
    status, _ = call(worker, "POST", f"/v1/alerts/{alert['alert_id']}/snooze", {"minutes": -5})
    assert status == 400


def test_actions_on_the_topic_need_the_gateway_signature(
    worker: Any, stack_settings: Settings
) -> None:
    """A forged action sent straight to the topic is dead-lettered; a signed one applies."""
    patient = f"ack-topic-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(stack_settings, falling_to_low(patient)))
    alert = open_alert(worker, patient, "low")
    forged = {
        "alert_id": alert["alert_id"],
        "patient_id": patient,
        "action": "snooze",
        "by": "Dr. Forged (chief physician)",
        "minutes": 1440,
    }
    signed = {**forged, "by": "charge-nurse", "minutes": 45, "nonce": uuid.uuid4().hex,
              "issued_at_ms": int(time.time() * 1000)}  # fmt: skip
    signed["sig"] = action_signature(Keys.derive(SIGNING_KEY).actions, signed)
    topic = stack_settings.topics.alert_acks
    for value in (orjson.dumps(forged), b'{"alert_id": "x"}', orjson.dumps(signed)):
        asyncio.run(send_raw(stack_settings, topic, patient.encode(), value))
    found = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.alerts,
            {patient},
            lambda f: any(e["transition"] == "snoozed" for e in f[patient]),
        )
    )
    snoozed = [e for e in found[patient] if e["transition"] == "snoozed"]
    assert [(e["by"], e["minutes"]) for e in snoozed] == [("charge-nurse", 45)]
    letters = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.deadletter,
            {patient},
            lambda f: sum(d["source_topic"] == topic for d in f[patient]) >= 2,
        )
    )
    reasons = sorted(d["reason"] for d in letters[patient] if d["source_topic"] == topic)
    assert reasons == ["schema", "unauthenticated"]


def test_prometheus_metrics(worker: Any) -> None:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["bedside_records_total"] > 0
    assert samples['bedside_alert_actions_total{result="applied"}'] >= 2
    assert any(k.startswith("bedside_consumer_lag{") for k in samples)
    assert samples['bedside_open_alerts{severity="warning"}'] >= 1
    assert "# TYPE bedside_dead_letters_total counter" in text
    # as Prometheus reads it: every family parses; latencies are histograms that add up
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("bedside_batch_seconds", "bedside_record_age_seconds"):
        assert families[name].type == "histogram"
        count = next(s.value for s in families[name].samples if s.name == f"{name}_count")
        top = next(s.value for s in families[name].samples if s.labels.get("le") == "+Inf")
        assert count == top > 0, name
    assert families["bedside_model_call_seconds"].type == "histogram"  # no models here
    # the shipped alert rules and operations dashboard ask only for metrics a worker exposes
    compose = Path(__file__).parents[2] / "deploy" / "compose"
    rules = yaml.safe_load((compose / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((compose / "grafana" / "dashboards" / "operations.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {
        re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"bedside_\w+", e)
    }
    exposed = {f.name for f in families.values()} | {f"{f.name}_total" for f in families.values()}
    assert asked and asked <= exposed, sorted(asked - exposed)


def test_ticks_reach_every_owned_partition(worker: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{worker.url}/stats", timeout=5) as response:
            if json.loads(response.read())["ticks"] >= 8:
                return
        time.sleep(1)
    raise AssertionError("fewer than 8 ticks processed in 30 s")


def test_server_sent_events_and_series_for_the_page(worker: Any, stack_settings: Settings) -> None:
    patient = f"sse-{uuid.uuid4().hex[:6]}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(urllib.error.HTTPError):  # a token in the URL is no credential
        urllib.request.urlopen(f"{worker.url}/v1/alerts/stream?token={TOKEN}", timeout=10)
    request = urllib.request.Request(f"{worker.url}/v1/alerts/stream", headers=bearer)
    with urllib.request.urlopen(request, timeout=30) as stream:
        asyncio.run(produce(stack_settings, falling_to_low(patient)))
        deadline = time.monotonic() + 30
        event = None
        while time.monotonic() < deadline and event is None:
            line = stream.readline().decode()
            if line.startswith("data: "):
                candidate = json.loads(line[6:])
                event = candidate if candidate["patient_id"] == patient else None
    assert event is not None and event["kind"] == "low"
    deadline = time.monotonic() + 30  # the time-series server makes writes readable in ~s
    values: list[float] = []
    while time.monotonic() < deadline and len(values) < 4:
        status, body = call(worker, "GET", f"/v1/patients/{patient}/series?hours=2")
        assert status == 200
        values = sorted(v for _, v in body["glucose"].get("99504-3", []))
        time.sleep(1)
    assert values == [60, 62, 66, 110]


def test_series_hours_must_be_a_finite_number(worker: Any) -> None:
    for hours in ("nan", "inf", "-inf", "x"):
        status, body = call(worker, "GET", f"/v1/patients/anyone/series?hours={hours}")
        assert status == 400 and body["error"] == "invalid", (hours, status)
