"""Helpers the integration tests share: produce native JSON records, read a topic back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.engine.broker import client_options, topic_partitions
from streams.settings import Settings


def recent_cgm(patient: str, minutes_ago: float, value: float, **extra: Any) -> dict[str, Any]:
    """A native CGM reading ``minutes_ago`` before now (whole seconds)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {
        "patient_id": patient,
        "code": "99504-3",
        "value": value,
        "unit": "mg/dL",
        "effective_at": at.isoformat(),
        "source": "test",
        "event_id": f"{patient}-{minutes_ago}",
        **extra,
    }


async def produce(
    settings: Settings, records: list[dict[str, Any]], *, rate: float | None = None
) -> None:
    """Native records to the glucose (CGM code) or vitals topic, keyed by patient."""
    producer = AIOKafkaProducer(linger_ms=5, **client_options(settings.kafka))
    await producer.start()
    try:
        for index, record in enumerate(records):
            topic = (
                settings.topics.glucose if record["code"] == "99504-3" else settings.topics.vitals
            )
            await producer.send(topic, orjson.dumps(record), key=record["patient_id"].encode())
            if rate and index % 50 == 49:
                await asyncio.sleep(50 / rate)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_and_kill(
    settings: Settings,
    records: list[dict[str, Any]],
    process: subprocess.Popen[bytes],
    *,
    rate: float,
    after_s: float,
) -> None:
    """Produce ``records`` at ``rate`` and kill ``process`` (SIGKILL: no clean shutdown)
    ``after_s`` seconds in, while they still arrive."""
    task = asyncio.create_task(produce(settings, records, rate=rate))
    await asyncio.sleep(after_s)
    process.send_signal(signal.SIGKILL)
    await task


#: (topic, key, value) of every record a test wrote as it is: hostile or malformed records on
#: the output topics are the test's, not Bedside's, and are left out of the contract check
RAW_WRITES: set[tuple[str, bytes, bytes]] = set()


async def send_raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    RAW_WRITES.add((topic, key, value))
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(
    settings: Settings,
    topic: str,
    keys: set[str],
    until: Callable[[dict[str, list[dict[str, Any]]]], bool],
    timeout: float = 60,
    isolation_level: str = "read_uncommitted",
) -> dict[str, list[dict[str, Any]]]:
    """Records of ``keys`` from the beginning until ``until(found)`` (or the timeout);
    ``read_committed``: only those of committed transactions (and of none)."""
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level=isolation_level,
        **client_options(settings.kafka),
    )
    await consumer.start()
    found: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(found):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    key = (record.key or b"").decode()
                    if key in keys:
                        found[key].append(orjson.loads(record.value))
    finally:
        await consumer.stop()
    return found


def alerts_of(
    settings: Settings, patients: set[str], kind: str, timeout: float = 30
) -> dict[str, list[dict[str, Any]]]:
    """The alert events of ``patients``, once each has one of ``kind`` (or the timeout)."""
    return asyncio.run(
        read_topic(
            settings,
            settings.topics.alerts,
            patients,
            lambda f: all(any(e["kind"] == kind for e in f[p]) for p in patients),
            timeout=timeout,
        )
    )


async def off_contract(settings: Settings) -> tuple[int, list[str]]:
    """Every record on the topics other systems read (alerts, risk, dead letters), checked
    against its published JSON Schema (``streams.contracts``): how many were checked, and a
    line per record that is not valid JSON or does not conform (by coordinates)."""
    from aiokafka import TopicPartition
    from jsonschema import Draft202012Validator

    from streams.contracts import contract_schemas

    schemas = contract_schemas()
    topics = {
        settings.topics.alerts: Draft202012Validator(schemas["alerts"]),
        settings.topics.risk: Draft202012Validator(schemas["risk"]),
        settings.topics.deadletter: Draft202012Validator(schemas["deadletter"]),
    }
    consumer = AIOKafkaConsumer(group_id=None, **client_options(settings.kafka))
    await consumer.start()
    checked, problems = 0, []
    try:
        present = await consumer.topics()
        parts = [  # asked of the broker: a consumer's own metadata may hold none (Kafka)
            TopicPartition(topic, p)
            for topic in topics
            if topic in present
            for p in await topic_partitions(settings.kafka, topic)
        ]
        if not parts:
            return 0, []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 120
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            if time.monotonic() > deadline:
                problems.append("the output topics could not be read to their end")
                break
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    value, key = record.value or b"", record.key or b""
                    if (tp.topic, key, value) in RAW_WRITES:
                        continue
                    checked += 1
                    where = f"{tp.topic}[{tp.partition}]@{record.offset}"
                    try:
                        event = orjson.loads(value)
                    except orjson.JSONDecodeError:
                        problems.append(f"{where}: not JSON")
                        continue
                    error = next(iter(topics[tp.topic].iter_errors(event)), None)
                    if error is not None:
                        path = "/".join(str(p) for p in error.absolute_path)
                        problems.append(f"{where}: {path}: {error.message[:200]}")
    finally:
        await consumer.stop()
    return checked, problems
