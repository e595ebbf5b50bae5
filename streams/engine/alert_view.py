"""Every worker's view of all alarms, from the alerts topic (all partitions, no group).

The care-team page, ``GET /v1/alerts`` and ``POST /v1/alerts/{id}/ack`` answer from it on any
worker, whichever worker owns the patient. It reads the topic from the beginning at start,
keeps the latest event of each alarm (the open ones and a bounded memory of resolved ids)
and hands every new event to the page's live subscribers (server-sent events).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError, KafkaError
from mode import Service

from ..settings import KafkaSettings
from .broker import client_options

log = logging.getLogger(__name__)
RESOLVED_MEMORY = 100_000
RETRY_S = 1.0  # between attempts to reach a broker that is away at start
#: Put in a stalled subscriber's queue when it is dropped: its stream ends, the page
#: reconnects and reloads the open alarms instead of showing "live" without new ones.
DROPPED: dict[str, Any] = {"dropped": True}


class AlertView(Service):
    """Latest state per alert id; subscribers get each event as it arrives."""

    def __init__(self, kafka: KafkaSettings, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka, self.topic = kafka, topic
        self.open: dict[str, dict[str, Any]] = {}
        self.resolved: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.events = 0
        self._consumer: AIOKafkaConsumer | None = None

    def apply(self, event: dict[str, Any]) -> None:
        alert_id = event["alert_id"]
        self.events += 1
        if event["state"] == "resolved":
            self.open.pop(alert_id, None)
            self.resolved[alert_id] = event
            while len(self.resolved) > RESOLVED_MEMORY:
                self.resolved.popitem(last=False)
        else:
            self.open[alert_id] = event
        for queue in list(self.subscribers):
            if queue.full():  # a stalled page: drop it, it reconnects and reloads
                self.subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(DROPPED)
            else:
                queue.put_nowait(event)

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self.open.get(alert_id) or self.resolved.get(alert_id)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
        self.subscribers.add(queue)
        return queue

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    async def on_start(self) -> None:
        self.add_future(self._follow())

    async def _connect(self) -> AIOKafkaConsumer | None:
        """The consumer, started (None when stopped first): a broker away is waited for."""
        while not self.should_stop:
            options = client_options(self.kafka)
            consumer = AIOKafkaConsumer(
                self.topic, group_id=None, auto_offset_reset="earliest", **options
            )
            try:
                await consumer.start()
            except BaseException as exc:
                await consumer.stop()
                if not isinstance(exc, KafkaError):
                    raise
                log.warning("alert view: broker not reachable yet (%s)", type(exc).__name__)
                await self.sleep(RETRY_S)
                continue
            self._consumer = consumer
            return consumer
        return None

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
                    try:
                        self.apply(orjson.loads(record.value))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        log.warning(
                            "alert view: unreadable record at %s[%d]@%d",
                            record.topic,
                            record.partition,
                            record.offset,
                        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
