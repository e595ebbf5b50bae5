"""Micro-batching across patients (Triton's dynamic batching, in-process).

Windows ready for scoring queue per model; a collector takes up to ``max_batch`` of them,
waiting at most ``max_delay_ms`` after the first for others, scores them in one ONNX call on
a worker thread (the event loop never blocks on a model) and hands each caller its row. The
queue is bounded: when it is full, callers wait, which slows consumption (backpressure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Run = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class BatchStats:
    calls: int = 0
    windows: int = 0
    seconds: float = 0.0  # inside the model calls
    largest: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # per call, the last 1000

    def record(self, size: int, seconds: float) -> None:
        self.calls += 1
        self.windows += size
        self.seconds += seconds
        self.largest = max(self.largest, size)
        self.latencies.append(seconds)
        if len(self.latencies) > 1000:
            del self.latencies[:500]


@dataclass
class _Request:
    x: np.ndarray
    future: asyncio.Future[list[np.ndarray]]


class _ModelQueue:
    def __init__(self, run: Run, size: int) -> None:
        self.run = run
        self.queue: asyncio.Queue[_Request] = asyncio.Queue(size)
        self.task: asyncio.Task[None] | None = None


class MicroBatcher:
    """Batches ``submit`` calls per model; see the module docstring."""

    def __init__(self, *, max_batch: int = 256, max_delay_ms: float = 5.0, queue_size: int = 8192):
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000
        self.queue_size = queue_size
        self.stats: dict[str, BatchStats] = {}
        self._queues: dict[str, _ModelQueue] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bedside-onnx")

    async def submit(self, key: str, run: Run, x: np.ndarray) -> list[np.ndarray]:
        """Score one window with model ``key``; returns that window's row of each output."""
        queue = self._queues.get(key)
        if queue is None or queue.task is None or queue.task.done():
            queue = self._queues[key] = _ModelQueue(run, self.queue_size)
            queue.task = asyncio.create_task(self._collect(key, queue), name=f"batch:{key}")
            self.stats.setdefault(key, BatchStats())
        queue.run = run  # a reloaded model version takes over the same queue
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        await queue.queue.put(_Request(x, future))
        return await future

    async def _collect(self, key: str, model: _ModelQueue) -> None:
        loop = asyncio.get_running_loop()
        stats = self.stats[key]
        while True:
            batch = [await model.queue.get()]
            deadline = loop.time() + self.max_delay
            while len(batch) < self.max_batch:
                if not model.queue.empty():
                    batch.append(model.queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(model.queue.get(), remaining))
                except TimeoutError:
                    break
            x = np.stack([r.x for r in batch])
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, model.run, x)
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                stats.errors += 1
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(error)
                continue
            stats.record(len(batch), time.perf_counter() - started)
            for i, r in enumerate(batch):
                if not r.future.done():
                    r.future.set_result([output[i] for output in outputs])

    async def close(self) -> None:
        for queue in self._queues.values():
            if queue.task is not None:
                queue.task.cancel()
        for queue in self._queues.values():
            if queue.task is not None:
                try:
                    await queue.task
                except asyncio.CancelledError:
                    pass
        self._queues.clear()
        self._executor.shutdown(wait=False)
