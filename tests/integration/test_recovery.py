"""Faust table recovery is exact on both brokers: on Tansu with the embedded profile's fix, on
Apache Kafka with Faust's own (the ``kafka`` profile, which needs no fix).

Unpatched, Tansu's wrong ListOffsets answer makes recovery stop early (stale values with the
memory store, ConsistencyError with RocksDB). These tests fail if the fix stops working,
e.g. after a Faust or aiokafka upgrade, and show that Kafka answers ListOffsets rightly.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.engine.broker import client_options, ensure_topics
from streams.engine.embedded import true_highwaters
from streams.settings import Settings

WORKER = Path(__file__).with_name("recovery_worker.py")

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)


async def _produce_batches(settings: Settings, topic: str, sizes: list[int]) -> None:
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        offset = 0
        for size in sizes:
            batch = producer.create_batch()
            for _ in range(size):
                batch.append(key=None, value=str(offset).encode(), timestamp=None)
                offset += 1
            await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()


async def test_listoffsets_is_wrong_on_tansu_and_the_fetch_highwater_is_right(
    stack_settings: Settings, broker: str
) -> None:
    topic = f"test.highwater.{uuid.uuid4().hex}"
    await ensure_topics(stack_settings.kafka, [topic], partitions=1)
    await _produce_batches(stack_settings, topic, [5, 1, 10, 3])
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(**client_options(stack_settings.kafka))
    await consumer.start()
    try:
        listed = await consumer.end_offsets([tp])
    finally:
        await consumer.stop()
    # The broker bug the profile works around: last batch's base offset + 1, not 19.
    # If this starts failing, Tansu was fixed; the profile's fix stays correct either way.
    # Kafka answers the true high watermark: its profile has no fix to apply.
    assert listed[tp] == (17 if broker == "tansu" else 19)
    fixed = await true_highwaters(
        stack_settings.kafka.servers, listed, timeout_s=10, **_auth(stack_settings)
    )
    assert fixed == {tp: 19}


def _auth(settings: Settings) -> dict[str, object]:
    options = client_options(settings.kafka)
    options.pop("bootstrap_servers")
    return options


def _wait_for_dump(
    worker: Any, dump: Path, expected: dict[str, list[int]], timeout: float
) -> dict[str, list[int]]:
    deadline = time.monotonic() + timeout
    state: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        worker.assert_alive()
        if dump.exists():
            state = json.loads(dump.read_text())
            if state == expected:
                return state
        time.sleep(0.3)
    return state


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_table_state_is_recovered_exactly_after_restart(
    stack_settings: Settings,
    spawn_worker: Callable[..., Any],
    tmp_path: Path,
    store: str,
    broker: str,
) -> None:
    partitions = 4
    topic = f"test.recovery.{uuid.uuid4().hex}"
    asyncio.run(ensure_topics(stack_settings.kafka, [topic], partitions=partitions))
    rng = random.Random(7)
    expected: dict[str, list[int]] = {}
    events: list[tuple[str, int, int]] = []
    for _ in range(12_000):
        key = f"patient-{rng.randrange(400):03d}"
        seq = expected.get(key, [0, 0])[0] + 1
        value = rng.randrange(1, 100)
        expected[key] = [seq, expected.get(key, [0, 0])[1] + value]
        events.append((key, seq, value))

    async def produce(events: list[tuple[str, int, int]]) -> None:
        producer = AIOKafkaProducer(linger_ms=5, **client_options(stack_settings.kafka))
        await producer.start()
        try:
            for i, (key, seq, value) in enumerate(events):
                await producer.send(topic, f"{seq}:{value}".encode(), key=key.encode())
                if i % 997 == 0:
                    await producer.flush()  # vary batch boundaries
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce(events))
    dump = tmp_path / "dump.json"
    env = {
        "BEDSIDE_WORKER__APP_ID": f"recovery-{uuid.uuid4().hex[:8]}",
        "BEDSIDE_WORKER__STORE": store,
        "BEDSIDE_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "BEDSIDE_TOPICS__PARTITIONS": str(partitions),
        "RECOVERY_TOPIC": topic,
        "RECOVERY_DUMP": str(dump),
    }

    def count_then_burst(first_run: bool) -> None:
        worker = spawn_worker(WORKER, **env, RECOVERY_MODE="count")
        try:
            if first_run:
                assert _wait_for_dump(worker, dump, expected, timeout=120) == expected
            # A last burst touching every key, once the backlog is done: the worker's final
            # changelog writes leave in multi-record batches, the case Tansu's ListOffsets
            # gets wrong, so the restart below must exercise the fix.
            burst = [(key, seq + 1, 1) for key, (seq, _total) in sorted(expected.items())]
            for key, seq, value in burst:
                expected[key] = [seq, expected[key][1] + value]
            asyncio.run(produce(burst))
            assert _wait_for_dump(worker, dump, expected, timeout=60) == expected
        finally:
            worker.stop()

    corrections = 0
    for attempt in range(3):
        count_then_burst(first_run=attempt == 0)
        dump.unlink()
        second = spawn_worker(WORKER, **env, RECOVERY_MODE="verify")
        try:
            recovered = _wait_for_dump(second, dump, expected, timeout=120)
        finally:
            second.stop()
        assert len(recovered) == len(expected)
        assert recovered == expected
        corrected = [
            line
            for line in second.log.read_text().splitlines()
            if "embedded profile: corrected" in line
        ]
        if broker == "kafka":
            # Faust's own recovery is exact on Kafka: the embedded profile never ran
            assert not corrected
            return
        assert corrected, "the embedded profile did not check the changelog high watermarks"
        corrections = int(corrected[-1].split("corrected ")[1].split()[0])
        if corrections > 0:
            break
        # every last changelog batch held one record this time (timing): Tansu's ListOffsets
        # was right and there was nothing to correct; burst and restart again
    # the fix was exercised: some changelog high watermark was wrong and corrected
    assert corrections > 0
