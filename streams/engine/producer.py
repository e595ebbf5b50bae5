"""Output records (risk, alerts, dead letters, re-routed observations) through one producer.

Faust's ``Topic.send`` costs a few hundred microseconds per record through its producer
buffer; the stream sends one risk record per patient per batch, so it uses a plain aiokafka
producer (``acks="all"``, short linger) and awaits the returned futures before the batch's
offsets are acknowledged.

Under ``processing_guarantee="exactly_once"`` a record sent with the input ``source``
partition that caused it goes through that partition's transactional producer (Faust's, the
one its offsets and changelog records are committed with), so it becomes visible to a
``read_committed`` consumer exactly when those offsets are committed. Records that no input
caused (clock ticks, the worker's own monitoring alarms) go through the plain producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service

from ..settings import KafkaSettings
from .broker import client_options

log = logging.getLogger(__name__)


class Transactions:
    """Faust's transactional producers (exactly-once): one per owned input partition, named
    as Faust names them, so a record joins the transaction its input's offsets commit in."""

    def __init__(self, app: faust.App, source_topic: str) -> None:
        self.app, self.source_topic = app, source_topic

    @property
    def active(self) -> bool:
        return bool(self.app.in_transaction)

    def transactional_id(self, source: int) -> str:
        group = self.app.assignor.group_for_topic(self.source_topic)
        return f"{self.app.conf.id}-{group}-{source}"

    async def send(
        self, source: int, topic: str, key: bytes | None, value: bytes, partition: int | None
    ) -> Awaitable[Any] | None:
        """The record sent in ``source``'s transaction, or None where this worker has no
        producer for it (a partition being handed over): then the caller sends it outside
        any transaction (seen at least once rather than never)."""
        producer: Any = self.app.producer
        transactional_id = self.transactional_id(source)
        if transactional_id not in producer._transaction_producers:
            log.warning(
                "no transactional producer for input partition %d: a record to %s is sent "
                "outside the transaction",
                source,
                topic,
            )
            return None
        sent: Awaitable[Any] = await producer.send(
            topic, key, value, partition, None, None, transactional_id=transactional_id
        )
        return sent


class RecordSink(Service):
    """Sends records; :meth:`send` returns a future resolved when the broker has it.

    A broker that is away when the worker starts does not stop the worker: the producer
    connects in the background (every ``RETRY_S``) and :meth:`send` raises the broker's
    error until then, as it does during an outage (callers answer 503 or retry the batch)."""

    RETRY_S = 1.0

    def __init__(
        self, kafka: KafkaSettings, *, transactions: Transactions | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self.transactions = transactions
        self._producer: AIOKafkaProducer | None = None
        self._connecting = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def _connect(self) -> AIOKafkaProducer:
        async with self._connecting:  # the retry loop and a send may both try
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                acks="all", linger_ms=2, max_batch_size=512 * 1024, **client_options(self.kafka)
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            return producer

    async def on_start(self) -> None:
        try:
            await self._connect()
        except KafkaError as exc:
            log.warning("output producer not connected yet (%s): retrying", type(exc).__name__)
            self.add_future(self._keep_connecting())

    async def _keep_connecting(self) -> None:
        while self._producer is None and not self.should_stop:
            await self.sleep(self.RETRY_S)
            try:
                await self._connect()
            except KafkaError:
                continue
            log.info("output producer connected")

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def topics(self, timeout_s: float) -> set[str] | None:
        """The broker's topics, or None when no broker answers within ``timeout_s``."""
        if self._producer is None:
            return None
        try:
            metadata = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout_s)
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return None
        return set(metadata.topics())

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        *,
        source: int | None = None,
    ) -> Awaitable[Any]:
        """Send a record; ``source``: the input partition whose records caused it."""
        if source is not None and self.transactions is not None and self.transactions.active:
            sent = await self.transactions.send(source, topic, key, value, partition)
            if sent is not None:
                return sent
        producer = self._producer or await self._connect()
        future: asyncio.Future[Any] = await producer.send(
            topic, value, key=key, partition=partition
        )
        return future
