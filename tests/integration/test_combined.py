"""Features together, on the real stack, with pseudonymised patient ids throughout.

One worker pseudonymises ids (BEDSIDE_PRIVACY__PSEUDONYMISE) and has per-patient clinical
settings from every source (the patient settings file and the environment). On it:

- a patient's own low threshold, SpO2 scale and quiet hours change its alarms and scores;
- a poison record leaves the patient's stored window, alarms and audit head as they were;
- hostile records on the alerts and risk topics leave the alarm list and ward view at 200
  and the worker alive, through a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from care_team import SIGNING_KEY, USERS
from influx_double import InfluxDouble
from stream_helpers import produce, read_topic, send_raw
from stream_helpers import recent_cgm as cgm

from streams.access.pseudonyms import Pseudonyms
from streams.access.signing import Keys, action_signature
from streams.patients import PatientDirectory
from streams.settings import Settings

KEY = "combined-test-key-" + "9c1e" * 8
RUN = uuid.uuid4().hex[:6]
POISON_WORKER = Path(__file__).parent / "poison_worker.py"
POISON_VALUE = 123.25  # poison_worker.py raises on a reading of exactly this value
# clear ids as senders spell them (mixed case, stray white space: one patient each)
OWN_LOW, ENV_LOW, DEFAULT = f"Own-Low-{RUN}", f"env-low-{RUN}", f"default-{RUN}"
SCALE2, SCALE1, POISONED = f"scale2-{RUN}", f"scale1-{RUN}", f"poisoned-{RUN}"
QUIET, LOUD = f"quiet-{RUN}", f"loud-{RUN}"
NURSE = USERS["nurse-general"][2]


def key(patient: str) -> str:
    """The id windows and events carry: normalised, then pseudonymised."""
    return PatientDirectory(pseudonyms=Pseudonyms(KEY)).key(patient)


def call(worker: Any, path: str, token: str = NURSE) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{worker.url}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def quiet_now() -> dict[str, str]:
    """Quiet hours around now (UTC), so re-alerts of routine kinds are held back."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=3), now + timedelta(hours=2)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "UTC"}


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("combined") / "patients.json"
    targets = {"urgent_low": 54, "low": 90, "high": 200, "urgent_high": 300}
    path.write_text(
        json.dumps(
            {
                OWN_LOW: {"glucose_targets": targets},
                QUIET: {"quiet_hours": quiet_now()},
                SCALE2: {"spo2_scale": 2},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def worker_env(settings_file: Path) -> dict[str, str]:
    return {
        "BEDSIDE_WORKER__APP_ID": f"combined-{RUN}",
        "POISON_VALUE": str(POISON_VALUE),
        "BEDSIDE_SCORING__MODELS": "[]",
        "BEDSIDE_STREAM__TICK_INTERVAL_S": "1",
        "BEDSIDE_PRIVACY__PSEUDONYMISE": "true",
        "BEDSIDE_PRIVACY__KEY": KEY,
        "BEDSIDE_STREAM__PATIENT_SETTINGS_FILE": str(settings_file),
        "BEDSIDE_STREAM__GLUCOSE_TARGETS": json.dumps(
            {f" ENV-LOW-{RUN}": {"urgent_low": 54, "low": 90, "high": 200, "urgent_high": 300}}
        ),
    }


@pytest.fixture(scope="module")
def worker(spawn_worker: Callable[..., Any], worker_env: dict[str, str]) -> Any:
    started = spawn_worker(POISON_WORKER, **worker_env)
    started.wait_ready()
    return started


def alerts_of(settings: Settings, patients: set[str], enough: Callable[[list[Any]], bool]) -> Any:
    keyed = {key(p): p for p in patients}
    found = asyncio.run(
        read_topic(
            settings,
            settings.topics.alerts,
            set(keyed),
            lambda f: all(enough(f[k]) for k in keyed),
            timeout=45,
        )
    )
    return {keyed[k]: events for k, events in found.items()}


def slow_low(patient: str) -> list[dict[str, Any]]:
    """85, 84, 83 ... mg/dL every 5 min for 35 min: below 90, above the default 70."""
    return [cgm(patient, 35 - 5 * i, 85 - i) for i in range(8)]


def test_personal_low_thresholds_follow_pseudonymised_patients(
    worker: Any, stack_settings: Settings
) -> None:
    asyncio.run(produce(stack_settings, slow_low(OWN_LOW) + slow_low(ENV_LOW) + slow_low(DEFAULT)))
    found = alerts_of(stack_settings, {OWN_LOW, ENV_LOW}, bool)
    for patient in (OWN_LOW, ENV_LOW):  # one from the settings file, one from the environment
        opened = [e for e in found[patient] if e["transition"] == "opened"]
        assert opened[0]["kind"] == "low" and "below 90 mg/dL" in opened[0]["reason"], opened
        assert opened[0]["patient_id"] == key(patient)
    # the default patient (low at 70) has no alarm at 78-85 mg/dL
    status, body = call(worker, "/v1/alerts")
    assert status == 200
    assert not [a for a in body["open"] if a["patient_id"] == key(DEFAULT)]


def test_quiet_hours_follow_a_pseudonymised_patient(worker: Any, stack_settings: Settings) -> None:
    """220 mg/dL for 2.5 h: the high alarm re-alerts after 2 h, except in quiet hours."""
    high = [cgm(p, 150 - 5 * i, 220) for p in (QUIET, LOUD) for i in range(31)]
    asyncio.run(produce(stack_settings, high))
    alerts_of(stack_settings, {LOUD}, lambda es: any(e["transition"] == "realerted" for e in es))
    found = alerts_of(stack_settings, {QUIET}, lambda es: any(e["kind"] == "high" for e in es))
    assert [e["transition"] for e in found[QUIET]] == ["opened"], found[QUIET]


def test_the_spo2_scale_follows_a_pseudonymised_patient(
    worker: Any, stack_settings: Settings
) -> None:
    def vitals(patient: str) -> list[dict[str, Any]]:
        at = {"effective_at": datetime.now(UTC).replace(microsecond=0).isoformat()}
        values = [("9279-1", 16, "/min"), ("59408-5", 89, "%"), ("8480-6", 125, "mm[Hg]"),
                  ("8867-4", 75, "/min"), ("8310-5", 37.0, "Cel"), ("67775-7", 0, "{score}"),
                  ("3151-8", 0, "L/min")]  # fmt: skip
        return [{"patient_id": patient, "code": c, "value": v, "unit": u, "source": "test",
                 "event_id": f"{patient}-{c}", **at} for c, v, u in values]  # fmt: skip

    asyncio.run(produce(stack_settings, vitals(SCALE2) + vitals(SCALE1)))
    keyed = {key(SCALE2): SCALE2, key(SCALE1): SCALE1}
    risk = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.risk,
            set(keyed),
            lambda f: all(any(_news2(e) for e in f[k]) for k in keyed),
        )
    )
    scores = {keyed[k]: [s for e in events if (s := _news2(e))][-1] for k, events in risk.items()}
    # SpO2 89 % on air: 3 points on scale 1, 0 on scale 2 (hypercapnic target 88-92 %)
    assert scores[SCALE1]["value"] - scores[SCALE2]["value"] == 3, scores


def _news2(event: dict[str, Any]) -> dict[str, Any] | None:
    return next((s for s in event["scores"] if s["name"] == "news2"), None)


def test_a_poison_record_leaves_the_stored_window_alarms_and_audit_head(
    worker: Any, stack_settings: Settings
) -> None:
    asyncio.run(produce(stack_settings, [cgm(POISONED, 15 - 5 * i, v)
                                         for i, v in enumerate([60, 52, 50, 49])]))  # fmt: skip
    alerts_of(stack_settings, {POISONED}, lambda es: any(e["kind"] == "urgent_low" for e in es))
    path = f"/v1/patients/{key(POISONED)}/window"
    before = _settled_window(worker, path)
    assert before["open_alerts"] and before["audit"]["seq"] >= 1
    asyncio.run(produce(stack_settings, [cgm(POISONED, 0.5, POISON_VALUE)]))
    keyed = key(POISONED)
    letters = asyncio.run(
        read_topic(stack_settings, stack_settings.topics.deadletter, {keyed}, lambda f: f[keyed])
    )[keyed]
    assert [e["reason"] for e in letters] == ["processing"]
    after = _settled_window(worker, path)
    assert after["open_alerts"] == before["open_alerts"]
    assert after["audit"] == before["audit"]
    assert after["cgm"] == before["cgm"] and after["baselines"] == before["baselines"]
    events = alerts_of(stack_settings, {POISONED}, bool)[POISONED]
    assert not [e for e in events if e["kind"] == "monitoring_fault"]  # nothing quarantined
    worker.assert_alive()


def _settled_window(worker: Any, path: str) -> dict[str, Any]:
    """The window document once two reads a second apart agree (the batch is stored)."""
    previous = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = call(worker, path)
        if status == 200 and body == previous:
            return body  # type: ignore[no-any-return]
        previous = body if status == 200 else None
        time.sleep(1)
    raise AssertionError(f"{path} did not settle in 30 s")


def test_a_replayed_signed_snooze_is_refused(worker: Any, stack_settings: Settings) -> None:
    """A captured snooze (signed by the gateway) sent again, and one sent late, are
    dead-lettered ``replayed``; the alarm keeps escalating."""
    patient = f"replay-{RUN}"
    asyncio.run(produce(stack_settings, [cgm(patient, 15 - 5 * i, v)
                                         for i, v in enumerate([110, 66, 62, 60])]))  # fmt: skip
    deadline = time.monotonic() + 30
    alert: dict[str, Any] | None = None
    while alert is None and time.monotonic() < deadline:
        _, body = call(worker, "/v1/alerts")
        alert = next((a for a in body["open"] if a["patient_id"] == key(patient)), None)
        time.sleep(0.3)
    assert alert is not None
    request = urllib.request.Request(
        f"{worker.url}/v1/alerts/{alert['alert_id']}/snooze",
        json.dumps({"minutes": 60}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {NURSE}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
    keyed, topics = key(patient), stack_settings.topics
    captured = asyncio.run(
        read_topic(stack_settings, topics.alert_acks, {keyed}, lambda f: f[keyed])
    )[keyed][0]
    assert captured["nonce"] and captured["issued_at_ms"]  # inside the signature
    tampered = {**captured, "issued_at_ms": captured["issued_at_ms"] + 1}  # sig breaks
    late = {**captured, "issued_at_ms": captured["issued_at_ms"] - 3_600_000, "sig": None}
    late["sig"] = action_signature(Keys.derive(SIGNING_KEY).actions, late)  # an hour old
    for value in (captured, tampered, late):
        raw = orjson.dumps(value)
        asyncio.run(send_raw(stack_settings, topics.alert_acks, keyed.encode(), raw))

    def refused(found: dict[str, list[Any]]) -> list[str]:
        return sorted(d["reason"] for d in found[keyed] if d["source_topic"] == topics.alert_acks)

    letters = asyncio.run(
        read_topic(stack_settings, topics.deadletter, {keyed}, lambda f: len(refused(f)) >= 3)
    )
    assert refused(letters) == ["replayed", "replayed", "unauthenticated"], refused(letters)
    events = alerts_of(
        stack_settings, {patient}, lambda es: any(e["transition"] == "snoozed" for e in es)
    )
    assert len([e for e in events[patient] if e["transition"] == "snoozed"]) == 1


HOSTILE_ALERTS = [
    {"alert_id": "hostile-1", "patient_id": ["x"], "kind": "low", "severity": "warning",
     "state": "open", "opened_at": "2026-01-01T00:00:00+00:00"},
    {"alert_id": {"a": 1}, "patient_id": "x", "state": "open"},
    [1, 2, 3],
]  # fmt: skip
HOSTILE_RISK = [
    {"patient_id": "hostile-r", "event_time": "2026-12-01T00:00:00+00:00",
     "scores": [], "inputs": {"latest": {"heart_rate": "x"}, "latest_at": {}}},
    {"patient_id": "hostile-r2", "event_time": "2026-12-01T00:00:00+00:00",
     "scores": [{"name": "news2", "value": "high"}]},
]  # fmt: skip


def test_hostile_output_records_leave_the_views_up_through_a_restart(
    spawn_worker: Callable[..., Any], worker_env: dict[str, str],
    stack_env_vars: dict[str, str], make_settings: Callable[[dict[str, str]], Settings],
) -> None:  # fmt: skip
    # topics of their own: the session's alerts topic stays a clean audit trail
    env = {**worker_env, "BEDSIDE_TOPICS__PREFIX": f"hostile-{RUN}.",
           "BEDSIDE_WORKER__APP_ID": f"hostile-{RUN}"}  # fmt: skip
    stack_settings = make_settings({**stack_env_vars, "BEDSIDE_TOPICS__PREFIX": f"hostile-{RUN}."})
    topics = stack_settings.topics
    worker = spawn_worker(POISON_WORKER, **env)
    worker.wait_ready()

    async def publish() -> None:
        for event in HOSTILE_ALERTS:
            await send_raw(stack_settings, topics.alerts, b"hostile", orjson.dumps(event))
        for event in HOSTILE_RISK:
            await send_raw(stack_settings, topics.risk, b"hostile", orjson.dumps(event))
        await send_raw(stack_settings, topics.risk, b"hostile", b"{not json")

    asyncio.run(publish())
    for running in (worker, None):
        if running is None:  # the records are within the views' backfill at every start
            worker.stop()
            running = spawn_worker(POISON_WORKER, **env)
            running.wait_ready()
        deadline = time.monotonic() + 20
        skipped: dict[str, float] = {}
        while time.monotonic() < deadline and not _all_skipped(skipped):
            time.sleep(0.5)
            skipped = _skipped(running)
        assert _all_skipped(skipped), skipped
        for token in (NURSE, USERS["admin-all"][2]):
            for path in ("/v1/alerts", "/v1/ward"):
                status, _ = call(running, path, token)
                assert status == 200, (path, status)
        time.sleep(2)
        running.assert_alive()
    # and a real alarm still reaches the list
    patient = f"after-hostile-{RUN}"
    asyncio.run(produce(stack_settings, [cgm(patient, 10 - 5 * i, v)
                                         for i, v in enumerate([52, 50, 49])]))  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body = call(running, "/v1/alerts")
        if any(a["patient_id"] == key(patient) for a in body["open"]):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no alarm after the hostile records")


def _all_skipped(skipped: dict[str, float]) -> bool:
    return skipped.get("AlertView", 0) >= 2 and skipped.get("WardView", 0) >= 3


def _skipped(worker: Any) -> dict[str, float]:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("bedside_view_records_skipped_total{"):
            view = line.split('view="')[1].split('"')[0]
            found[view] = float(line.rsplit(" ", 1)[1])
    return found


def test_a_back_dated_lab_refused_by_influxdb_does_not_hold_the_stream(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    """Against InfluxDB 2.7's answers (a double with a 30-day bucket): one lab dated 60 days
    ago gets a 422 partial write; it is dead-lettered, not resent, and the readings after it
    are stored and their offsets committed within 30 s."""
    double = InfluxDouble(retention_s=30 * 86_400).start()
    try:
        app_id = f"influx422-{RUN}"
        running = spawn_worker(
            BEDSIDE_WORKER__APP_ID=app_id,
            BEDSIDE_SCORING__MODELS="[]",
            BEDSIDE_PRIVACY__PSEUDONYMISE="true",
            BEDSIDE_PRIVACY__KEY=KEY,
            BEDSIDE_INFLUX__URL=double.url,
            BEDSIDE_INFLUX__TOKEN=double.token,
        )
        running.wait_ready()
        patient = f"backfill-{RUN}"
        at = (datetime.now(UTC) - timedelta(days=60)).replace(microsecond=0)
        lab = {"patient_id": patient, "code": "4548-4", "value": 7.2, "unit": "%",
               "effective_at": at.isoformat(), "source": "ehr-backfill"}  # fmt: skip
        topics = stack_settings.topics
        asyncio.run(send_raw(stack_settings, topics.labs, patient.encode(), orjson.dumps(lab)))
        time.sleep(1)  # the lab in a batch of its own, as an EHR back-fill sends it
        asyncio.run(produce(stack_settings, [cgm(patient, 10 - 5 * i, 120) for i in range(3)]))
        started = time.monotonic()
        keyed = key(patient)
        while time.monotonic() - started < 30:
            glucose = [s for s in double.stored if s.startswith("glucose,") and keyed in s]
            if len(glucose) == 3 and asyncio.run(_committed(stack_settings, app_id)):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not stored and committed in 30 s: {double.requests}")
        assert not [s for s in double.stored if s.startswith("labs,")]
        assert sum(1 for status, _ in double.requests if status == 422) == 1  # never resent
        letters = asyncio.run(
            read_topic(stack_settings, topics.deadletter, {keyed}, lambda f: f[keyed])
        )[keyed]
        [letter] = [e for e in letters if e["reason"] == "series_refused"]
        assert (
            "beyond retention" in letter["message"] and at.date().isoformat() in letter["message"]
        )
        running.assert_alive()
    finally:
        double.stop()


async def _committed(settings: Settings, group: str) -> bool:
    """Whether the worker's group committed every offset of the ingest topics."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.engine.broker import client_options

    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, **client_options(settings.kafka)
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in (settings.topics.labs, settings.topics.glucose)
                 for p in range(settings.topics.partitions)]  # fmt: skip
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()
