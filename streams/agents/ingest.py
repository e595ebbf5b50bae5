"""Ingest: decode every record of the ingest topics, dead-letter what fails, sink the rest.

Each record yields observations or a dead-letter record, never neither. A batch's offsets
are acknowledged (and later committed) only after its points were accepted by the
time-series server and its dead letters by the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import faust
from faust.types import EventT

from ..ingest.decode import IngestLimits, decode_record
from ..ingest.problems import DeadLetter
from ..runtime import Runtime
from ..schemas.observation import Kind, Observation
from ..settings import Settings
from ..sinks.influx import InfluxSink
from ..sinks.lines import observation_line

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    """Subscribe the ingest agent to the three ingest topics."""
    topics = settings.topics
    source = app.topic(
        *topics.ingest,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    deadletter = app.topic(
        topics.deadletter,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    kinds = {topics.vitals: Kind.VITAL, topics.glucose: Kind.GLUCOSE, topics.labs: Kind.LAB}
    limits = IngestLimits(settings.ingest.max_record_bytes, settings.ingest.max_entries)
    sink = InfluxSink(settings.influx)
    app.service(sink)  # type: ignore[arg-type]  # an instance is accepted too
    stats = runtime.ingest

    @app.agent(source, name="bedside.ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.ingest.batch_size, within=settings.ingest.batch_within_s
        )
        async for events in batches:
            await process_batch(events)

    async def process_batch(events: Sequence[EventT[bytes]]) -> None:
        received_at = datetime.now(UTC)
        lines: list[str] = []
        accepted: list[Observation] = []
        pending: list[Awaitable[object]] = []
        for event in events:
            message = event.message
            raw = message.value if isinstance(message.value, bytes) else b""
            result = decode_record(
                raw,
                received_at=received_at,
                topic_kind=kinds.get(message.topic),
                key=message.key if isinstance(message.key, bytes) else None,
                limits=limits,
            )
            stats.records += 1
            stats.observations += len(result.observations)
            accepted.extend(result.observations)
            lines.extend(observation_line(o) for o in result.observations)
            if result.problems:
                letter = DeadLetter.build(
                    result,
                    raw,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    received_at=received_at,
                )
                stats.dead_letters[letter.reason.value] += 1
                log.info(
                    "dead-lettered %s[%d]@%d: %s (%d problems)",
                    message.topic,
                    message.partition,
                    message.offset,
                    letter.reason.value,
                    len(letter.problems),
                )
                pending.append(
                    await deadletter.send(key=message.key, value=letter.model_dump_json().encode())
                )
        await sink.write(lines)
        for handler in runtime.observation_handlers:
            await handler(accepted)
        if pending:
            await asyncio.gather(*pending)  # the broker acknowledged every dead letter
