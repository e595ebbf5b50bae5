"""The patient stream on Faust: the table, the timers and the batch step's ports.

The patient topics (ingest, care-team actions, clock ticks; co-partitioned) bypass Faust's
per-record stream: ``streams.engine.consumer`` hands each fetched batch (up to
``ingest.batch_size`` records) to :class:`~streams.processing.batch.BatchStep`, which
decodes, applies, scores and emits, and to its
:class:`~streams.processing.checkpoint.Checkpoint`, which stores each batch in order and
acknowledges its records once everything they caused is safe (see there for the order).
This module only adapts Faust to the step's ports: the patient-window table as a
:class:`~streams.processing.ports.StateStore`, the consumer's acknowledgements, and the
timers that send clock ticks and reload models.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.types import EventT, Message

from ..access.signing import Keys
from ..ingest.problems import DeadLetter, DecodeResult, Reason
from ..monitoring import Monitor
from ..patients import PatientDirectory
from ..processing.batch import BatchStep, StepCounters, StepSettings
from ..processing.checkpoint import Checkpoint
from ..processing.pipeline import PatientPipeline
from ..processing.ports import IncomingRecord, StepPorts
from ..scoring.service import ModelScoring
from ..settings import InfluxSettings, Settings
from ..sinks.answers import RefusedPoints
from ..sinks.lines import patient_of
from .broker import partition_of
from .consumer import acknowledge, deliver_batches
from .faust_compat import current_event
from .producer import RecordSink, Transactions
from .series import InfluxSink


class TableStore:
    """The patient-window table as the batch step's state store.

    Faust takes a table key's store and changelog partition from the *current event*; the
    store keeps an event of each partition from the latest batch to make current. Writes go
    to the table's data and its changelog directly, awaited before a batch is acknowledged:
    ``table[key] = ...`` queues the changelog record without a way to wait for it, and
    Faust's ``producer.flush()`` gives up on a queue that drains slower than one record per
    100 ms, so a worker killed after a commit came back without that batch's windows."""

    def __init__(self, app: faust.App, table: Any, partition_of: Any) -> None:
        self.app, self.table, self.partition_of = app, table, partition_of
        self.name: str = table.name
        self._events: dict[int, EventT[bytes]] = {}

    def remember(self, records: Sequence[Message]) -> None:
        """Events of the partitions a batch touches (the table needs one current)."""
        seen: set[int] = set()
        for message in records:
            if message.partition not in seen:
                seen.add(message.partition)
                self._events[message.partition] = faust.Event(
                    self.app, message.key, message.value, None, message
                )

    def get(self, partition: int, key: bytes) -> bytes | None:
        with current_event(self._events[partition]):
            state: bytes | None = self.table.get(key)
        return state

    def keys(self, partition: int) -> Iterable[bytes]:
        with current_event(self._events[partition]):
            return [k for k in self.table.keys() if self.partition_of(k) == partition]

    def put(self, partition: int, key: bytes, state: bytes) -> Awaitable[object]:
        with current_event(self._events[partition]):
            self.table.data[key] = state
        changelog: Awaitable[object] = self.table.send_changelog(partition, key, state)
        return changelog


class ConsumerAcks:
    def __init__(self, app: faust.App) -> None:
        self.app = app

    def acknowledge(self, records: Sequence[IncomingRecord]) -> None:
        acknowledge(self.app.consumer, records)  # type: ignore[arg-type]  # Faust messages


async def report_refused(
    records: RecordSink, topic: str, influx: InfluxSettings, refused: RefusedPoints
) -> object:
    """Points the time-series database refused for good, as a dead letter (delivered),
    keyed by the patient of the first point as every other dead letter is."""
    patient = patient_of(refused.lines[0]) if refused.lines else None
    key = patient.encode() if patient is not None else None
    letter = DeadLetter.build(
        DecodeResult.refused(Reason.SERIES_REFUSED, refused.describe()),
        "\n".join(refused.lines).encode(),
        topic=f"timeseries:{influx.bucket}",
        partition=None,
        offset=None,
        key=key,
        received_at=datetime.now(UTC),
    )
    return await (await records.send(topic, key, letter.model_dump_json().encode()))


def windows_table(app: faust.App, settings: Settings) -> Any:
    """The patient-window table (bytes to bytes, changelogged), one per worker."""
    return app.Table(
        "patient-windows",
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topics.partitions,
    )


@dataclass(frozen=True)
class StreamParts:
    """What the patient stream shares with the rest of the worker (``streams.worker``)."""

    keys: Keys  # signs actions and seals the audit chain
    patients: PatientDirectory  # ids as keyed; each patient's settings
    scoring: ModelScoring
    monitor: Monitor
    counters: StepCounters  # what the stream counts (/stats and /metrics read them)


def register(app: faust.App, settings: Settings, windows: Any, parts: StreamParts) -> None:
    """Subscribe the batch step to the ingest topics, alert actions and ticks."""
    topics, monitor, scoring = settings.topics, parts.monitor, parts.scoring
    sink = InfluxSink(settings.influx)
    # under exactly-once a record the batch step sends joins its input partition's transaction
    records = RecordSink(settings.kafka, transactions=Transactions(app, topics.glucose))
    monitor.clients.append(records)
    app.service(sink)  # type: ignore[arg-type]  # an instance is accepted too
    app.service(records)  # type: ignore[arg-type]
    pipeline = PatientPipeline(
        settings.stream,
        models=scoring.serving_models(),
        keys=parts.keys,
        patients=parts.patients,
        quarantine_to=topics.deadletter,
    )
    partition = functools.partial(partition_of, partitions=topics.partitions)
    state = TableStore(app, windows, partition)
    monitor.sink = sink
    checkpoint = Checkpoint(
        state,
        sink,
        ConsumerAcks(app),
        monitor,
        max_points=settings.ingest.max_unstored_points,
        max_batches=settings.ingest.max_unstored_batches,
        on_failure=lambda exc: asyncio.ensure_future(app.crash(exc)),  # type: ignore[arg-type]
        on_refused=functools.partial(report_refused, records, topics.deadletter, settings.influx),
    )
    step = BatchStep(
        pipeline,
        StepPorts(state, records, scoring, partition),
        checkpoint,
        StepSettings.of(settings),
        parts.counters,
    )

    @app.timer(interval=settings.scoring.reload_interval_s)  # type: ignore[untyped-decorator]
    async def reload_models() -> None:
        """Serve a newer model version as soon as it appears in the model directory."""
        if settings.scoring.models:
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, scoring.store.refresh):
                pipeline.set_models(scoring.serving_models())

    @app.timer(interval=settings.stream.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """A clock tick into every partition this worker owns (ordered with its data)."""
        value = orjson.dumps({"tick_ms": int(time.time() * 1000)})
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.ticks:
                await records.send(topics.ticks, None, value, partition=tp.partition)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget(app: faust.App, revoked: set[object], **kwargs: object) -> None:
        step.forget()  # rebuilt from the table on the next tick of each owned partition

    stats = parts.counters.ingest

    async def process_batch(messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        state.remember(messages)
        await step(messages)
        stats.batch_seconds.observe(time.perf_counter() - started)
        produced = min((m.timestamp for m in messages), default=None)  # seconds, CreateTime
        if produced:
            stats.record_age_seconds.observe(max(0.0, time.time() - produced))

    deliver_batches(app, topics.patient_stream, process_batch)
