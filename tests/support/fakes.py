"""In-memory fakes of the batch step's ports (``streams.processing.ports``): no broker.

Each fake records what it was given and can be told to fail, so the checkpoint's order is
tested as it matters: what is acknowledged, stored or written when something fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from aiokafka.partitioner import DefaultPartitioner

from streams.access.pseudonyms import Pseudonyms
from streams.ingest.decode import IngestLimits
from streams.monitoring import Monitor
from streams.patients import PatientDirectory
from streams.processing.batch import BatchStep, StepCounters, StepSettings
from streams.processing.checkpoint import Checkpoint
from streams.processing.outputs import PatientOutput
from streams.processing.pipeline import PatientBatch, PatientPipeline
from streams.processing.ports import BatchScorer, IncomingRecord, StepPorts
from streams.processing.state import PatientState
from streams.schemas.observation import Observation
from streams.settings import StreamSettings, TopicSettings
from streams.sinks.answers import RefusedPoints


@dataclass(frozen=True)
class Record:
    """A consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def done(value: object = None) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def failed(exc: BaseException) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


@dataclass
class MemoryRecords:
    """Sent records, per topic; ``fail``: every send's acknowledgement fails."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    fail: BaseException | None = None

    sources: list[int | None] = field(default_factory=list)  # each record's input partition

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        *,
        source: int | None = None,
    ) -> Awaitable[object]:
        self.sent.append((topic, key, value))
        self.sources.append(source)
        return failed(self.fail) if self.fail else done()

    def on(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.sent if t == topic]


@dataclass
class MemorySeries:
    """Accepted lines; ``fail``: writes raise (a database that refuses them); ``gate``: writes
    wait until it is set (a database that does not answer yet)."""

    lines: list[str] = field(default_factory=list)
    fail: BaseException | None = None
    gate: asyncio.Event | None = None
    writes: int = 0

    async def write(self, lines: list[str]) -> list[RefusedPoints]:
        self.writes += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise self.fail
        self.lines.extend(lines)
        return []


@dataclass
class MemoryState:
    """Stored windows per partition; ``fail``: puts fail (their changelog is not acked)."""

    name: str = "patient-windows"
    data: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    fail: BaseException | None = None

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def keys(self, partition: int) -> Iterable[bytes]:
        return list(self.data.get(partition, {}))

    def put(self, partition: int, key: bytes, state: bytes) -> Awaitable[object]:
        if self.fail:
            return failed(self.fail)
        self.data.setdefault(partition, {})[key] = state
        return done()


@dataclass
class MemoryAcks:
    acked: list[IncomingRecord] = field(default_factory=list)

    def acknowledge(self, records: Sequence[IncomingRecord]) -> None:
        self.acked.extend(records)


class NoModels:
    async def score(self, requests: Sequence[Any]) -> list[list[np.ndarray] | None]:
        return [None for _ in requests]


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TOPICS = TopicSettings()
PARTITIONS = list(range(TOPICS.partitions))
_partitioner = DefaultPartitioner()


def partition_of(key: bytes) -> int:
    return int(_partitioner(key, PARTITIONS, PARTITIONS))


class StepHarness:
    """A batch step wired to fakes, with a counter of offsets."""

    def __init__(
        self,
        pipeline: PatientPipeline | None = None,
        state: MemoryState | None = None,
        max_batches: int = 10_000,
        pseudonyms: Pseudonyms | None = None,
    ) -> None:
        self.state = state or MemoryState()
        self.records, self.series, self.acks = MemoryRecords(), MemorySeries(), MemoryAcks()
        self.crashes: list[BaseException] = []
        self.monitor = Monitor()
        self.checkpoint = Checkpoint(
            self.state,
            self.series,
            self.acks,
            self.monitor,
            max_points=1_000_000,
            max_batches=max_batches,
            on_failure=self.crashes.append,
        )
        self.counters = StepCounters()
        self.stats = self.counters.ingest
        self.step = BatchStep(
            pipeline
            or PatientPipeline(StreamSettings(), patients=PatientDirectory(pseudonyms=pseudonyms)),
            StepPorts(self.state, self.records, NoModels(), partition_of),
            self.checkpoint,
            StepSettings(TOPICS, IngestLimits()),
            self.counters,
            clock=lambda: NOW,
        )

    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in self.records.on(TOPICS.alerts)]

    def letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in self.records.on(TOPICS.deadletter)]


def apply(
    pipeline: PatientPipeline,
    patient_id: str,
    state: PatientState | None,
    observations: list[Observation],
    *,
    arrived_at: int | None = None,
    scorer: BatchScorer | None = None,
) -> tuple[PatientState, PatientOutput]:
    """One patient's observations through ``pipeline.observations`` (no failure expected):
    the state after them and the one output."""
    patient = PatientBatch(patient_id, observations, load=lambda: state, stored=lambda: None)
    [result] = asyncio.run(pipeline.observations([patient], scorer, arrived_at))
    assert result.state is not None and not result.failed and result.quarantined is None
    [output] = result.outputs
    return result.state, output


def tick(pipeline: PatientPipeline, state: PatientState, wall_ms: int) -> PatientOutput:
    """``pipeline.tick`` of a stored state that ticks cleanly: its one output."""
    result = pipeline.tick(state.patient_id, lambda: state, lambda: None, wall_ms)
    assert result is not None and result.quarantined is None
    [output] = result.outputs
    return output
