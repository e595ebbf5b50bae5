"""Bedside never goes quiet, on the real stack: poison records and states, a broker restart,
the front door. (The database outage is in ``test_stream.py``.)

Each case once stopped alarms for someone: it must now leave the worker up and a control
patient's urgent low alarming within seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from care_team import NURSE, SIGNING_KEY
from stream_helpers import alerts_of, produce, read_topic, send_raw
from stream_helpers import recent_cgm as cgm

from deploy.stack import LocalStack
from streams.access.audit import verify
from streams.access.signing import Keys, action_signature
from streams.engine.broker import ensure_topics
from streams.settings import Settings

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)

RULES = {"BEDSIDE_SCORING__MODELS": "[]", "BEDSIDE_STREAM__TICK_INTERVAL_S": "1"}
POISON_WORKER = Path(__file__).parent / "poison_worker.py"


def urgent_low(patient: str) -> list[dict[str, Any]]:
    """Two readings below 54 mg/dL: the debounced urgent low opens."""
    return [cgm(patient, 10, 41), cgm(patient, 5, 38)]


def request(
    worker: Any,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"{worker.url}{path}", method=method, data=body, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(worker: Any, path: str, document: Any, **headers: str) -> tuple[int, Any]:
    status, _, body = request(
        worker,
        "POST",
        path,
        orjson.dumps(document),
        {"Content-Type": "application/json", **headers},
    )
    return status, json.loads(body or b"{}")


def dead_letters(
    settings: Settings, keys: set[str], timeout: float = 30
) -> dict[str, list[dict[str, Any]]]:
    return asyncio.run(
        read_topic(
            settings,
            settings.topics.deadletter,
            keys,
            lambda f: all(f[k] for k in keys),
            timeout=timeout,
        )
    )


def test_poison_records_leave_the_worker_up_and_others_alarming(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:6]
    app_id = f"poison-{run}"
    worker = spawn_worker(POISON_WORKER, BEDSIDE_WORKER__APP_ID=app_id, **RULES)
    worker.wait_ready()
    attacked, control, injected = f"att-{run}", f"ctl-{run}", f"inject-{run}"
    p1900, p9999, labs_key = f"pp1900-{run}", f"pp9999-{run}", f"labs-{run}"

    # the gateway refuses the 1900 reading outright (it once answered 200)
    hr_1900 = {"patient_id": p1900, "code": "8867-4", "value": 72, "unit": "/min",
               "effective_at": "1900-01-01T00:00:00Z"}  # fmt: skip
    status, body = post_json(worker, "/v1/observations", hr_1900)
    assert status == 400 and body["error"] == "time", body
    far = (datetime(9999, 12, 31, 23, 54, tzinfo=UTC), datetime(9999, 12, 31, 23, 55, tzinfo=UTC))
    poison = [
        hr_1900,
        {**cgm(p9999, 0, 120), "effective_at": far[0].isoformat(),
         "received_at": far[1].isoformat()},
        # a sender's own arrival time once let it move the patient's clock to 2100
        {**cgm(attacked, 0, 120), "effective_at": "2100-01-01T00:00:00Z",
         "received_at": "2100-01-01T00:00:00Z"},
        cgm(injected, 3, 45),
        cgm(injected, 1, 40),
    ]  # fmt: skip
    asyncio.run(produce(stack_settings, poison))
    # an 800 KB malformed lab record: its dead letter once exceeded the producer limit
    big = b'{"resourceType": "Observation", "note": "' + b"x" * 800_000 + b'"'
    asyncio.run(send_raw(stack_settings, stack_settings.topics.labs, labs_key.encode(), big))
    asyncio.run(produce(stack_settings, urgent_low(control) + urgent_low(attacked)))

    found = alerts_of(stack_settings, {control, attacked}, "urgent_low")
    assert all(any(e["kind"] == "urgent_low" for e in found[p]) for p in (control, attacked))
    letters = dead_letters(stack_settings, {p1900, p9999, attacked, injected, labs_key})
    assert {e["reason"] for e in letters[p1900]} == {"time"}
    assert {e["reason"] for e in letters[p9999]} == {"time"}
    assert {e["reason"] for e in letters[attacked]} == {"time"}
    assert {e["reason"] for e in letters[injected]} == {"processing"}
    [too_big] = letters[labs_key]
    assert too_big["reason"] == "malformed_json" and too_big["original_truncated"]
    assert too_big["original_bytes"] == len(big)
    time.sleep(3)  # ticks run over every window, the attacked one included
    worker.assert_alive()
    _, _, metrics = request(worker, "GET", "/metrics")
    assert b"bedside_processing_errors_total 2.0" in metrics

    # restarted on the same state, it stays up, and a new patient alarms within seconds
    worker.stop()
    again = spawn_worker(POISON_WORKER, BEDSIDE_WORKER__APP_ID=app_id, **RULES)
    again.wait_ready()
    after = f"ctl2-{run}"
    asyncio.run(produce(stack_settings, urgent_low(after)))
    assert alerts_of(stack_settings, {after}, "urgent_low")[after]
    time.sleep(3)
    again.assert_alive()


def test_a_corrupt_stored_state_is_quarantined_and_the_patient_monitored_again(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:6]
    app_id = f"quarantine-{run}"
    patient = f"corrupt-{run}"
    topics = stack_settings.topics
    changelog = f"{app_id}-patient-windows-changelog"
    asyncio.run(ensure_topics(stack_settings.kafka, [changelog], topics.partitions))
    partitions = list(range(topics.partitions))
    partition = DefaultPartitioner()(patient.encode(), partitions, partitions)

    async def corrupt() -> None:
        from aiokafka import AIOKafkaProducer

        from streams.engine.broker import client_options

        producer = AIOKafkaProducer(**client_options(stack_settings.kafka))
        await producer.start()
        try:
            await producer.send_and_wait(
                changelog, b"\x93\x02not-a-window", key=patient.encode(), partition=partition
            )
        finally:
            await producer.stop()

    asyncio.run(corrupt())  # what a bug or a bad migration could leave behind
    worker = spawn_worker(BEDSIDE_WORKER__APP_ID=app_id, **RULES)
    worker.wait_ready()
    asyncio.run(produce(stack_settings, urgent_low(patient)))
    # both in the same batch: the fault first, then the new readings' alarms, on one chain
    events = asyncio.run(
        read_topic(
            stack_settings,
            topics.alerts,
            {patient},
            lambda f: {"monitoring_fault", "urgent_low"} <= {e["kind"] for e in f[patient]},
        )
    )[patient]
    kinds = {e["kind"] for e in events}
    assert {"monitoring_fault", "urgent_low"} <= kinds, kinds
    fault = next(e for e in events if e["kind"] == "monitoring_fault")
    assert "reset" in fault["reason"] and fault["severity"] == "urgent"
    [letter] = dead_letters(stack_settings, {patient})[patient]
    assert letter["reason"] == "state" and letter["source_topic"].endswith("patient-windows")
    # the fault is the first link of the patient's chain, the readings' alarms follow it
    # (a batch replayed at least once may publish a link twice: a redelivered branch)
    assert events[0]["kind"] == "monitoring_fault" and events[0]["audit"]["seq"] == 1
    trail = verify(Keys.derive(SIGNING_KEY).audit, events)[patient]
    assert trail.problems == [] and trail.starts_at == 1 and trail.length >= 2
    worker.assert_alive()


def test_every_alarm_event_carries_its_audit_link_on_every_path(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    """Models on: a patient whose model scores fail (the rule alarms go out on their own),
    a patient the models score, a poison record beside them, ticks, an acknowledgement.
    Every alarm event on the topic is sealed, each patient's links in publish order."""
    run = uuid.uuid4().hex[:6]
    faulty, scored, poisoned = f"modelfault-{run}", f"scored-{run}", f"inject-{run}"
    worker = spawn_worker(
        POISON_WORKER,
        BEDSIDE_WORKER__APP_ID=f"sealed-{run}",
        BEDSIDE_STREAM__TICK_INTERVAL_S="1",
    )
    worker.wait_ready()
    # 150 -> 33 mg/dL in 65 min: the last two readings below 54 open the urgent low
    falling = [(70 - 5 * i, 150 - 9 * i) for i in range(14)]
    readings = [cgm(p, ago, v) for p in (faulty, scored) for ago, v in falling]
    asyncio.run(produce(stack_settings, [*readings, cgm(poisoned, 1, 50)]))
    found = alerts_of(stack_settings, {faulty, scored}, "urgent_low", timeout=60)
    assert dead_letters(stack_settings, {poisoned})[poisoned][0]["reason"] == "processing"
    opened = next(e for e in found[scored] if e["kind"] == "urgent_low")
    # the worker's alert view reads the topic from its start: the ack waits until it has it
    deadline = time.monotonic() + 30
    while True:
        status, _, _ = request(
            worker,
            "POST",
            f"/v1/alerts/{opened['alert_id']}/ack",
            None,
            {"Authorization": f"Bearer {NURSE}"},
        )
        if status != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 202
    patients = {faulty, scored}
    events = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.alerts,
            patients,
            lambda f: any(e["transition"] == "acknowledged" for e in f[scored]),
            timeout=30,
        )
    )
    trails = verify(Keys.derive(SIGNING_KEY).audit, [e for p in patients for e in events[p]])
    for patient in patients:
        assert all(isinstance(e.get("audit"), dict) for e in events[patient]), patient
        trail = trails[patient]  # a replayed batch's links count as redelivered, not broken
        assert trail.problems == [] and trail.starts_at == 1, (patient, trail)
        assert trail.length == max(e["audit"]["seq"] for e in events[patient])
    assert "urgent_low" in {e["kind"] for e in events[faulty]}  # the rules, without the models
    # the events above may come from other workers of the session (their own groups read the
    # same topics): wait for this worker's own count
    deadline, errors = time.monotonic() + 60, 0.0
    while errors < 2 and time.monotonic() < deadline:
        _, _, metrics = request(worker, "GET", "/metrics")
        [errors] = [
            float(line.split()[1])
            for line in metrics.decode().splitlines()
            if line.startswith("bedside_processing_errors_total ")
        ]
        time.sleep(0.5)
    assert errors >= 2  # the poison record and the failed model scores, counted
    worker.assert_alive()


@pytest.mark.tansu_only  # its own Tansu stack: the embedded broker restarts empty
def test_a_broker_restart_is_survived_without_manual_steps(
    tmp_path: Path,
    port: Callable[[], int],
    spawn_worker: Callable[..., Any],
    make_stack_env: Callable[[Path, int, int], dict[str, str]],
    make_settings: Callable[[dict[str, str]], Settings],
    run_bedside: Callable[..., Any],
) -> None:
    env = make_stack_env(tmp_path / "stack", port(), port())
    run_bedside("stack", "up", env=env)
    settings = make_settings(env)
    stack = LocalStack(settings)
    try:
        own = {k: v for k, v in env.items() if k.startswith("BEDSIDE_")}
        worker = spawn_worker(**own, **RULES)
        worker.wait_ready()
        before = f"before-restart-{uuid.uuid4().hex[:6]}"
        asyncio.run(produce(settings, urgent_low(before)))
        nurse = {"Authorization": f"Bearer {NURSE}"}
        deadline, alert = time.monotonic() + 30, None
        while alert is None:
            assert time.monotonic() < deadline, "no alarm before the broker stopped"
            listed = json.loads(request(worker, "GET", "/v1/alerts", None, nurse)[2])["open"]
            alert = next((a for a in listed if a["patient_id"] == before), None)
            time.sleep(0.3)
        assert stack._stop("broker")
        at = datetime.now(UTC).isoformat()
        started = time.monotonic()
        status, headers, _ = request(
            worker,
            "POST",
            "/v1/observations",
            orjson.dumps(cgm("br-1", 0, 100) | {"effective_at": at}),
            {"Content-Type": "application/json"},
        )
        assert status == 503 and headers.get("Retry-After"), status
        assert time.monotonic() - started < 15
        deadline = time.monotonic() + 20
        problems: list[str] = []
        while time.monotonic() < deadline and not problems:
            _, _, body = request(worker, "GET", "/ready")
            problems = json.loads(body)["problems"]
            time.sleep(0.5)
        assert any("broker unreachable" in p for p in problems), problems
        # an acknowledgement now is answered at once: 503, retry (it once hung, then 500)
        started = time.monotonic()
        status, headers, _ = request(
            worker, "POST", f"/v1/alerts/{alert['alert_id']}/ack", None, nurse
        )
        assert status == 503 and headers.get("Retry-After"), status
        assert time.monotonic() - started < 5
        time.sleep(10)
        run_bedside("stack", "up", env=env)  # the embedded broker comes back empty
        worker.wait_ready(timeout=90)
        patient = f"after-restart-{uuid.uuid4().hex[:6]}"
        asyncio.run(produce(settings, urgent_low(patient)))
        assert alerts_of(settings, {patient}, "urgent_low", timeout=60)[patient]
        worker.assert_alive()
        log = worker.log.read_text()
        assert log.count("restarts clean") == 1
        errors = log.count("[ERROR]")
        assert errors < 200, f"{errors} ERROR lines"  # once 13k-34k for a broker restart
    finally:
        run_bedside("stack", "down", env=env)


def test_the_front_door(
    spawn_worker: Callable[..., Any],
    stack_settings: Settings,
    stack_env_vars: dict[str, str],
    run_bedside: Callable[..., Any],
) -> None:
    refused = [
        {"BEDSIDE_WEB__HOST": "0.0.0.0", "BEDSIDE_WEB__TOKEN": ""},
        {"BEDSIDE_WEB__TOKEN": "change-me-please"},
        {"BEDSIDE_WEB__TOKEN": "replace-me"},
    ]
    for extra in refused:
        result = run_bedside("worker", env={**os.environ, **stack_env_vars, **extra}, check=False)
        assert result.returncode != 0 and "BEDSIDE_WEB__TOKEN" in result.stderr, extra
    token = "front-door-token-" + uuid.uuid4().hex
    worker = spawn_worker(BEDSIDE_WEB__TOKEN=token, **RULES)
    worker.wait_ready()
    auth = {"Authorization": f"Bearer {NURSE}"}  # a care-team user; the token is for devices
    patient = f"door-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(stack_settings, urgent_low(patient)))
    alert_id = alerts_of(stack_settings, {patient}, "urgent_low")[patient][0]["alert_id"]
    deadline = time.monotonic() + 20
    while alert_id.encode() not in request(worker, "GET", "/v1/alerts", headers=auth)[2]:
        assert time.monotonic() < deadline, "the alarm never reached the alert view"
        time.sleep(0.3)
    snooze = f"/v1/alerts/{alert_id}/snooze"
    body = b'{"by": "attacker", "minutes": 1440}'
    # CSRF: a foreign page posting text/plain, with or without the token it cannot read
    for headers in (
        {"Content-Type": "text/plain", "Origin": "https://evil.example", **auth},
        {"Content-Type": "application/json", "Origin": "https://evil.example", **auth},
        {"Content-Type": "application/json", "Host": "evil.example:6066", **auth},
        {"Content-Type": "text/plain", **auth},
    ):
        status = request(worker, "POST", snooze, body, headers)[0]
        assert status in (403, 415), (headers, status)
    # Faust's own views answer nothing
    for path in ("/table/patient-windows/", "/router/", "/graph/"):
        assert request(worker, "GET", path)[0] == 404, path
    status, headers, _ = request(worker, "GET", "/ui")
    assert status == 200
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # a newline in an alert id cannot forge a log line
    forged = "x\n[1] [CRITICAL] all patients discharged"  # at most 64 characters
    action: dict[str, Any] = {"alert_id": forged, "patient_id": patient, "action": "ack",
                              "by": "x", "issued_at_ms": int(time.time() * 1000),
                              "nonce": "0123abcd" * 4}  # fmt: skip
    action["sig"] = action_signature(Keys.derive(SIGNING_KEY).actions, {**action, "minutes": 30})
    asyncio.run(
        send_raw(
            stack_settings,
            stack_settings.topics.alert_acks,
            patient.encode(),
            orjson.dumps(action),
        )
    )
    nested = '{"url": "http://x", "extension": [' * 400 + '{"url": "u"}' + "]}" * 400
    fhir = (
        '{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": '
        '"http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/p"}, '
        f'"effectiveDateTime": "{datetime.now(UTC).isoformat()}", "extension": [{nested}]}}'
    )
    status, _, answer = request(
        worker,
        "POST",
        "/fhir/Observation",
        fhir.encode(),
        {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
    )
    assert status == 400 and b"nests deeper" in answer
    deadline = time.monotonic() + 20
    while "alert action on x" not in worker.log.read_text():
        assert time.monotonic() < deadline, "the forged action was never logged"
        time.sleep(0.3)
    log = worker.log.read_text()
    assert "all patients discharged" in log  # logged, escaped on its own line
    assert not any(line.startswith("[1] [CRITICAL]") for line in log.splitlines())
    assert "Traceback" not in log
    worker.assert_alive()
