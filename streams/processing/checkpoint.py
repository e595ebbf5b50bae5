"""The checkpoint: the order that makes Bedside lose nothing, written once.

For each computed batch, in this order:

1. every record the batch sent (alarms, risk events, dead letters, re-routed observations)
   is acknowledged by the broker;
2. the batch before it is stored (batches are stored in order, each after the one before);
3. its time-series points are stored by the server (retried through outages); points it
   refuses for good (a partial write, a bad line) are reported on the dead-letter topic
   and that report acknowledged by the broker;
4. its windows are stored and their changelog records acknowledged by the broker;
5. its records are acknowledged, so their offsets may be committed.

A crash anywhere before 5 replays the batch from the windows stored before it: points are
idempotent and alert ids stable, so the replay changes nothing downstream. Later batches
are computed (and their alarms sent) while earlier ones are stored; they read the windows
still waiting here (:meth:`Checkpoint.pending`). Up to ``max_points`` points and
``max_batches`` batches may wait; beyond that :meth:`submit` waits (backpressure).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

from ..monitoring import Monitor
from ..sinks.answers import RefusedPoints
from . import codec
from .ports import Acknowledger, IncomingRecord, SeriesSink, StateStore
from .state import PatientState

log = logging.getLogger(__name__)


class Checkpoint:
    """Stores computed batches in order; see the module docstring for the order."""

    def __init__(
        self,
        state: StateStore,
        series: SeriesSink,
        acks: Acknowledger,
        monitor: Monitor,
        *,
        max_points: int,
        max_batches: int,
        on_failure: Callable[[BaseException], None],
        on_refused: Callable[[RefusedPoints], Awaitable[object]] | None = None,
    ) -> None:
        self.state, self.series, self.acks, self.monitor = state, series, acks, monitor
        self.max_points, self.max_batches = max_points, max_batches
        self.on_failure, self.on_refused = on_failure, on_refused
        # key -> (batch, state, its bytes) of states computed but not yet stored
        self._unstored: dict[bytes, tuple[int, PatientState, bytes]] = {}
        self._inflight: collections.deque[tuple[asyncio.Future[None], int]] = collections.deque()
        self._newest: asyncio.Future[None] | None = None
        self._numbers = itertools.count()

    def pending(self, key: bytes) -> tuple[PatientState, bytes] | None:
        """A state computed by a batch still being stored, and its bytes."""
        found = self._unstored.get(key)
        return None if found is None else (found[1], found[2])

    async def submit(
        self,
        sent: list[Awaitable[object]],
        lines: list[str],
        states: dict[bytes, tuple[int, PatientState]],
        records: Sequence[IncomingRecord],
    ) -> int:
        """Store a computed batch after the ones before it; wait only beyond the bounds.

        ``states``: key -> (partition, state) of every patient state the batch touched,
        serialised now (the next batch may change them while this one is stored). Returns the
        bytes of the states to store."""
        number = next(self._numbers)
        encoded = {key: (p, codec.encode(state)) for key, (p, state) in states.items()}
        for key, (_, state) in states.items():
            self._unstored[key] = (number, state, encoded[key][1])
        task = asyncio.ensure_future(
            self._store(self._newest, number, sent, lines, encoded, records)
        )
        task.add_done_callback(self._failed)
        self._newest = task
        self._inflight.append((task, len(lines)))
        self.monitor.unstored_points += len(lines)
        while self._inflight and self._inflight[0][0].done():
            self._inflight.popleft()
        while self._inflight and (
            self.monitor.unstored_points > self.max_points or len(self._inflight) > self.max_batches
        ):
            await self._inflight.popleft()[0]
        return sum(len(raw) for _, raw in encoded.values())

    async def drain(self) -> None:
        """Wait until every submitted batch is stored (tests, shutdown)."""
        if self._newest is not None:
            await self._newest

    async def _store(
        self,
        previous: asyncio.Future[None] | None,
        number: int,
        sent: list[Awaitable[object]],
        lines: list[str],
        states: dict[bytes, tuple[int, bytes]],
        records: Sequence[IncomingRecord],
    ) -> None:
        await asyncio.gather(*sent)  # 1
        if previous is not None:
            await previous  # 2
        refused = await self.series.write(lines)  # 3
        if refused and self.on_refused is not None:
            await asyncio.gather(*(self.on_refused(points) for points in refused))
        await asyncio.gather(  # 4
            *(self.state.put(partition, key, state) for key, (partition, state) in states.items())
        )
        self.acks.acknowledge(records)  # 5
        self.monitor.stored(len(lines), len(records))
        for key in states:
            if self._unstored.get(key, (None,))[0] == number:
                del self._unstored[key]

    def _failed(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        log.critical("storing a batch failed; stopping the worker", exc_info=exc)
        self.on_failure(exc)
