"""What the batch step talks to: small typed ports, implemented by the engine (Faust) and,
in tests, by in-memory fakes (``tests/support/fakes.py``).

Nothing here imports Faust, mode or aiokafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..scoring.families import ModelRequest
from ..sinks.answers import RefusedPoints


class IncomingRecord(Protocol):
    """One record of the patient stream as the consumer delivered it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> Any: ...  # bytes, or None
    @property
    def value(self) -> Any: ...  # bytes


class RecordSink(Protocol):
    """Sends output records; the awaitable it returns resolves once the broker has one.
    ``source``: the partition of the input record that caused it (under exactly-once the
    record joins that partition's transaction)."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        *,
        source: int | None = None,
    ) -> Awaitable[object]: ...


class SeriesSink(Protocol):
    """Writes line protocol; returns once the time-series server stored every line it will
    ever store, with the points it refused for good (to report, never to resend)."""

    async def write(self, lines: list[str]) -> list[RefusedPoints]: ...


class StateStore(Protocol):
    """The patients' stored windows, per partition (the engine's table)."""

    name: str

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def keys(self, partition: int) -> Iterable[bytes]: ...

    def put(self, partition: int, key: bytes, state: bytes) -> Awaitable[object]:
        """Store ``state``; the awaitable resolves once it is durable (changelog acked)."""
        ...


class Acknowledger(Protocol):
    """Marks records as processed: their offsets may be committed."""

    def acknowledge(self, records: Sequence[IncomingRecord]) -> None: ...


class BatchScorer(Protocol):
    """Scores the model requests of a batch (batched across patients)."""

    async def score(self, requests: Sequence[ModelRequest]) -> list[list[np.ndarray] | None]: ...


@dataclass(frozen=True)
class StepPorts:
    """Everything the batch step talks to."""

    state: StateStore  # the patients' stored states
    records: RecordSink  # output, re-routed and dead-letter records
    scoring: BatchScorer  # the models
    partition_of: Callable[[bytes], int]  # a patient key's partition (the producer's)
