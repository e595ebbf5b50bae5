"""Batch delivery on the real broker: a failing handler stops the worker, and nothing of the
failed batch is committed (it is fetched again after a restart)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.engine.broker import client_options, ensure_topics
from streams.settings import Settings

WORKER = Path(__file__).with_name("batch_worker.py")


async def _send(settings: Settings, topic: str, values: list[bytes]) -> None:
    """The values as one record batch: sent one by one, the first ``ok`` of the failing
    batch could be fetched alone and committed before ``boom`` arrived (seen in CI)."""
    producer = AIOKafkaProducer(linger_ms=200, **client_options(settings.kafka))
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=0) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _committed(settings: Settings, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(group_id=group, **client_options(settings.kafka))
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


def test_a_failing_handler_stops_the_worker_and_commits_nothing_of_its_batch(
    stack_settings: Settings, spawn_worker: Callable[..., Any]
) -> None:
    topic = f"test.batches.{uuid.uuid4().hex}"
    group = f"batches-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(stack_settings.kafka, [topic], partitions=1))
    worker = spawn_worker(
        WORKER, BATCH_TOPIC=topic, BEDSIDE_WORKER__APP_ID=group, BEDSIDE_TOPICS__PARTITIONS="1"
    )
    worker.wait_ready()
    asyncio.run(_send(stack_settings, topic, [b"ok"] * 5))
    deadline = time.monotonic() + 60
    while asyncio.run(_committed(stack_settings, group, topic)) != 5:
        assert time.monotonic() < deadline, "the good batch was never committed"
        time.sleep(1)

    asyncio.run(_send(stack_settings, topic, [b"ok", b"boom", b"ok"]))
    worker.process.wait(timeout=60)  # the worker stops on its own (else TimeoutExpired)
    assert "a handler bug" in worker.log.read_text()
    assert asyncio.run(_committed(stack_settings, group, topic)) == 5
