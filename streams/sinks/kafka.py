"""Output records (risk, alerts, dead letters, re-routed observations) through one producer.

Faust's ``Topic.send`` costs a few hundred microseconds per record through its producer
buffer; the stream sends one risk record per patient per batch, so it uses a plain aiokafka
producer (``acks="all"``, short linger) and awaits the returned futures before the batch's
offsets are acknowledged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service

from ..broker import client_options
from ..settings import KafkaSettings


class RecordSink(Service):
    """Sends records; :meth:`send` returns a future resolved when the broker has it."""

    def __init__(self, kafka: KafkaSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            acks="all", linger_ms=2, max_batch_size=512 * 1024, **client_options(self.kafka)
        )
        await self._producer.start()

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
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> asyncio.Future[Any]:
        if self._producer is None:
            await self.on_start()
        assert self._producer is not None
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value, key=key, partition=partition
        )
        return future
