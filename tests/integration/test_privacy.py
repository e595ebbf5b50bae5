"""Pseudonymised patient ids on the real stack: no clear id anywhere the worker writes.

A worker with BEDSIDE_PRIVACY__PSEUDONYMISE takes records for clear ids (an alarm, vital
signs, a malformed record), a user of the patient's ward acknowledges the alarm, and then
every topic the worker writes (all but the ingest topics, which hold what senders sent),
every series of the time-series server, the changelog's stored windows and the worker's log
are searched for the clear ids: none is there. The page still shows the clear id to a user
of the ward, and only to them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from care_team import USERS
from stream_helpers import produce, read_topic, send_raw
from stream_helpers import recent_cgm as cgm

from deploy.tsdb import export_series, force_flush
from streams.access.pseudonyms import Pseudonyms
from streams.engine.broker import client_options
from streams.processing.codec import FORMAT_VERSION
from streams.settings import Settings
from streams.windows.compact import decode_document

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)

KEY = "privacy-test-key-" + "7f3a" * 8
RUN = uuid.uuid4().hex[:8]
ALARM, VITALS, BROKEN = (f"clear-{RUN}-{s}" for s in ("alarm", "vitals", "broken"))


def get(worker: Any, path: str, user: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {USERS[user][2]}"}
    request = urllib.request.Request(f"{worker.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


async def written_topics(settings: Settings) -> dict[str, list[tuple[bytes, bytes]]]:
    """(key, value) of every record of every topic but the ingest topics."""
    consumer = AIOKafkaConsumer(group_id=None, **client_options(settings.kafka))
    await consumer.start()
    try:
        ingest = set(settings.topics.ingest)
        names = [t for t in await consumer.topics() if t not in ingest]
        # every topic's partitions, as the brokers describe them (a consumer's metadata may
        # not have them yet on Kafka)
        admin = AIOKafkaAdminClient(**client_options(settings.kafka))
        await admin.start()
        try:
            partitions = {
                d["topic"]: sorted(p["partition"] for p in d["partitions"])
                for d in await admin.describe_topics(names)
            }
        finally:
            await admin.close()
        found: dict[str, list[tuple[bytes, bytes]]] = {}
        for name in names:
            parts = [TopicPartition(name, p) for p in partitions[name]]
            assert parts, f"{name} has no partitions"
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            records = found[name] = []
            deadline = time.monotonic() + 30
            while any([await consumer.position(tp) < ends[tp] for tp in parts]):
                assert time.monotonic() < deadline, f"{name} could not be read to its end"
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += [(r.key or b"", r.value or b"") for r in batch]
        return found
    finally:
        await consumer.stop()


def events(
    settings: Settings, topic: str, patient: str, until: Callable[[list[Any]], bool]
) -> list[dict[str, Any]]:
    """The records of ``patient`` on ``topic`` once ``until`` says enough are there."""
    return asyncio.run(read_topic(settings, topic, {patient}, lambda f: until(f[patient])))[patient]


def readable(topic: str, value: bytes) -> bytes:
    """What a record says: a stored window decoded, a dead letter without its original."""
    if "changelog" in topic and value:
        try:
            return repr(decode_document(FORMAT_VERSION, value)).encode()
        except Exception:  # noqa: BLE001 - another test's corrupt state: its bytes as they are
            return value
    if topic.endswith("deadletter"):
        letter = orjson.loads(value)
        letter.pop("original_b64")  # the sender's bytes: the topic is documented as PHI
        return orjson.dumps(letter)
    return value


def test_no_clear_patient_id_leaves_ingest(
    spawn_worker: Callable[..., Any], stack_settings: Settings, tmp_path: Path
) -> None:
    patients = tmp_path / "patients.json"
    patients.write_text(json.dumps({ALARM: {"ward": "4B"}}))
    worker = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_PRIVACY__PSEUDONYMISE="true",
        BEDSIDE_PRIVACY__KEY=KEY,
        BEDSIDE_STREAM__PATIENT_SETTINGS_FILE=str(patients),
    )
    worker.wait_ready()
    pseudonym = Pseudonyms(KEY).of
    heart = [{**cgm(VITALS, m, 0), "code": "8867-4", "unit": "/min", "value": 70 + m}
             for m in (10, 5, 0)]  # fmt: skip
    low = [cgm(ALARM, 15 - 5 * i, v) for i, v in enumerate([110, 66, 62, 58])]
    asyncio.run(produce(stack_settings, low + heart))
    asyncio.run(send_raw(stack_settings, stack_settings.topics.vitals, BROKEN.encode(), b"{oops"))
    topic = stack_settings.topics
    alarms = events(stack_settings, topic.alerts, pseudonym(ALARM), bool)
    assert alarms and alarms[0]["patient_id"] == pseudonym(ALARM)
    # the ward comes from the settings file's clear id; the page shows the clear id to the ward
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, ward = get(worker, "/v1/ward", "nurse-4b")
        rows = {r["patient_id"]: r for r in ward.get("patients", [])}
        if pseudonym(ALARM) in rows and rows[pseudonym(ALARM)].get("display_id"):
            break
        time.sleep(0.5)
    assert rows[pseudonym(ALARM)]["display_id"] == ALARM
    _, general = get(worker, "/v1/ward", "nurse-general")
    assert pseudonym(ALARM) not in {r["patient_id"] for r in general["patients"]}
    # the worker's alert view reads the whole alerts topic at start: wait until it has the alarm
    deadline = time.monotonic() + 60
    while alarms[0]["alert_id"] not in {
        a["alert_id"] for a in get(worker, "/v1/alerts", "nurse-4b")[1].get("open", [])
    }:
        assert time.monotonic() < deadline, "the alarm never reached the alert view"
        time.sleep(0.5)
    body = json.dumps({"minutes": 5}).encode()
    request = urllib.request.Request(
        f"{worker.url}/v1/alerts/{alarms[0]['alert_id']}/ack", body, method="POST",
        headers={"Authorization": f"Bearer {USERS['nurse-4b'][2]}",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
    acked = events(stack_settings, topic.alerts, pseudonym(ALARM),
                   lambda found: any(e["transition"] == "acknowledged" for e in found))  # fmt: skip
    assert acked[-1]["by"] == "nurse-4b"
    letters = events(stack_settings, topic.deadletter, pseudonym(BROKEN), bool)
    assert letters[0]["reason"] == "malformed_json"
    time.sleep(2)  # the last batch's windows and series are stored

    clear = [c.encode() for c in (ALARM, VITALS, BROKEN)]
    clear += [base64.b64encode(c) for c in clear]  # dead letters carry keys as base64
    topics = asyncio.run(written_topics(stack_settings))
    assert any("changelog" in t for t in topics) and stack_settings.topics.risk in topics, sorted(
        topics
    )
    for topic, records in topics.items():
        for key, value in records:
            text = key + b" " + readable(topic, value)
            assert not any(c in text for c in clear), (topic, text[:300])
    mine = [pseudonym(p).encode() for p in (ALARM, VITALS)]
    risk = b"".join(v for _, v in topics[stack_settings.topics.risk])
    assert all(m in risk for m in mine)  # what was written, was written under pseudonyms
    windows = b"".join(
        readable(t, v) for t, records in topics.items() if "changelog" in t for _, v in records
    )
    assert all(m in windows for m in mine)  # the stored windows are the pseudonyms' too
    force_flush(stack_settings.influx.url)
    assert export_series(stack_settings.influx.url, f'{{patient_id=~".*{RUN}.*"}}') == []
    assert export_series(stack_settings.influx.url, f'{{patient_id="{pseudonym(VITALS)}"}}')
    log = worker.log.read_text()
    assert not any(c.decode() in log for c in clear[:3])
