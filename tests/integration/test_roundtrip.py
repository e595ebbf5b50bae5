"""A record through the real broker and a point through the real time-series server."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from deploy.tsdb import export_series, force_flush
from streams.engine.broker import client_options
from streams.settings import Settings


async def test_every_bedside_topic_exists_with_its_partitions(stack_settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**client_options(stack_settings.kafka))
    await admin.start()
    try:
        described = await admin.describe_topics(list(stack_settings.topics.all))
    finally:
        await admin.close()
    assert {d["topic"]: len(d["partitions"]) for d in described} == {
        name: stack_settings.topics.partitions for name in stack_settings.topics.all
    }


async def test_produce_and_consume_a_keyed_record(stack_settings: Settings) -> None:
    topic = stack_settings.topics.vitals
    patient = f"test-{uuid.uuid4()}"
    value = orjson.dumps({"patient_id": patient, "code": "8867-4", "value": 72.0})
    producer = AIOKafkaProducer(**client_options(stack_settings.kafka))
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=patient.encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(stack_settings.kafka))
    await consumer.start()
    try:
        tp = TopicPartition(topic, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        batch = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert batch.key == patient.encode()
    assert orjson.loads(batch.value) == orjson.loads(value)


def test_write_and_read_back_a_point(stack_settings: Settings) -> None:
    patient = f"test-{uuid.uuid4()}"
    url = stack_settings.influx.url
    ts_ms = int(time.time() * 1000)
    line = f"vitals,patient_id={patient},code=8867-4 value=72.5 {ts_ms}"
    with InfluxDBClient(url=url, token="t", org=stack_settings.influx.org) as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        writer.write(bucket=stack_settings.influx.bucket, record=line, write_precision="ms")
        # the same series and timestamp again: stored once (replays stay idempotent)
        writer.write(bucket=stack_settings.influx.bucket, record=line, write_precision="ms")
    deadline = time.monotonic() + 15
    series: list[dict[str, object]] = []
    while time.monotonic() < deadline and not series:
        force_flush(url)
        series = export_series(url, f'vitals_value{{patient_id="{patient}"}}')
        time.sleep(0.2)
    assert len(series) == 1
    assert series[0]["metric"] == {
        "__name__": "vitals_value",
        "patient_id": patient,
        "code": "8867-4",
    }
    assert series[0]["values"] == [72.5]
    assert series[0]["timestamps"] == [ts_ms]
