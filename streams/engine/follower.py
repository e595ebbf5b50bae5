"""A worker-wide reader of one topic (all partitions, no consumer group) for the web views.

The alert view and the ward view read their topics on every worker, whichever worker owns
the patients: each keeps what the pages need in memory and hands changes to live
subscribers. A broker away at start is waited for. Every record is checked against the
view's event schema (``streams.schemas.events``) before it is applied; a record that is not
JSON, does not fit, or fails to apply is counted (``skipped``), logged by its coordinates
(never its payload) and skipped: no record on a topic can crash a worker or break a page.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from mode import Service
from pydantic import TypeAdapter

from ..settings import KafkaSettings
from .broker import client_options, topic_partitions

log = logging.getLogger(__name__)
RETRY_S = 1.0  # between attempts to reach a broker that is away at start


class TopicFollower(Service):
    """Reads ``topic`` from its start (or its last ``backfill`` records per partition)."""

    schema: TypeAdapter[Any] | None = None  # what a record must be to be applied

    def __init__(
        self, kafka: KafkaSettings, topic: str, *, backfill: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.kafka, self.topic, self.backfill = kafka, topic, backfill
        self._consumer: AIOKafkaConsumer | None = None
        self.skipped = 0  # records not applied: not JSON, not the schema, failed to apply

    def apply(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def take(self, value: bytes | None) -> str | None:
        """Validate and apply one record's value; None when applied, else why it was not
        (the exception type: the payload is never logged)."""
        try:
            event = orjson.loads(value or b"")
            if self.schema is not None:
                self.schema.validate_python(event)
            elif not isinstance(event, dict):
                return "not an object"
            self.apply(event)
        except Exception as exc:  # noqa: BLE001 - one record never stops a view
            self.skipped += 1
            return type(exc).__name__
        return None

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    async def on_start(self) -> None:
        self.add_future(self._follow())

    async def _connect(self) -> AIOKafkaConsumer | None:
        """The consumer, started and placed (None when stopped first)."""
        name = type(self).__name__
        while not self.should_stop:
            options = client_options(self.kafka)
            if self.backfill is None:
                consumer = AIOKafkaConsumer(
                    self.topic, group_id=None, auto_offset_reset="earliest", **options
                )
            else:
                consumer = AIOKafkaConsumer(group_id=None, **options)
            try:
                await consumer.start()
                if self.backfill is not None:
                    await self._place(consumer, self.backfill)
            except BaseException as exc:
                await consumer.stop()
                if not isinstance(exc, KafkaError):
                    raise
                log.warning("%s: broker not reachable yet (%s)", name, type(exc).__name__)
                await self.sleep(RETRY_S)
                continue
            self._consumer = consumer
            return consumer
        return None

    async def _place(self, consumer: AIOKafkaConsumer, backfill: int) -> None:
        # every partition, asked of the broker: never "none" (the view would stay empty)
        found = await topic_partitions(self.kafka, self.topic)
        partitions = [TopicPartition(self.topic, p) for p in found]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - backfill))

    async def _follow(self) -> None:
        consumer = await self._connect()
        if consumer is None:
            return
        # the local consumer is kept: a stop right after the start (a worker told to stop as
        # it becomes ready) clears ``self._consumer`` before this loop reads again
        while not self.should_stop:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except ConsumerStoppedError:
                return
            for records in batches.values():
                for record in records:
                    refused = self.take(record.value)
                    if refused is not None:
                        log.warning(
                            "%s: record at %s[%d]@%d skipped (%s)",
                            type(self).__name__,
                            record.topic,
                            record.partition,
                            record.offset,
                            refused,
                        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
