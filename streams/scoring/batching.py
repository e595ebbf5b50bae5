"""Batched scoring across patients: each model scores a batch's windows in few ONNX calls.

The batch step hands the model requests of a whole batch at once; they are grouped by
model, their inputs built per model as one array (``families.inputs_of``) and scored
in calls of at most ``max_batch`` windows, so no window waits for a timer to fill a batch.
The calls run **on the event loop** by default (a call of 256 windows takes 1-3 ms on a CPU
core): on the 2-core box, running them on a worker thread made the sparse stream 2.7x
slower (4,111 against 11,332 events/s, one run), as the thread's calls and the loop's Python
work then contend for the interpreter and the cores the broker and the time-series server
need. ``threaded`` puts them on a worker thread (a box with cores to spare, a slow model).
On a GPU every call is
padded to a power-of-two batch (8 .. ``max_batch``): the provider then meets a handful of
input shapes, each set up once, instead of a new one for nearly every call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..buckets import Buckets

Run = Callable[[np.ndarray], list[np.ndarray]]
Rows = list[list[np.ndarray] | None]  # per window: its row of each output, None if it failed


@dataclass
class BatchStats:
    calls: int = 0
    windows: int = 0
    seconds: float = 0.0  # inside the model calls
    largest: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # per call, the last 1000
    buckets: Buckets = field(default_factory=Buckets)  # per call, since the start

    def record(self, size: int, seconds: float) -> None:
        self.calls += 1
        self.windows += size
        self.seconds += seconds
        self.largest = max(self.largest, size)
        self.buckets.observe(seconds)
        self.latencies.append(seconds)
        if len(self.latencies) > 1000:
            del self.latencies[:500]


class ModelCalls:
    """Runs each model on many windows in calls of at most ``max_batch``, on the event loop
    or (``threaded``) on a worker thread."""

    def __init__(self, *, max_batch: int = 256, threaded: bool = False) -> None:
        self.max_batch = max_batch
        self.stats: dict[str, BatchStats] = {}
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="bedside-onnx")
            if threaded
            else None
        )

    async def run(
        self, key: str, run: Run, x: np.ndarray, *, pad: bool = False
    ) -> tuple[Rows, BaseException | None]:
        """Rows of every window of ``x`` (N, steps, channels); a call that raises leaves its
        windows None and returns its error (the other calls still count). ``pad``: call with
        power-of-two batches (a GPU)."""
        loop = asyncio.get_running_loop()
        stats = self.stats.setdefault(key, BatchStats())
        rows: Rows = [None] * len(x)
        error: BaseException | None = None
        for start in range(0, len(x), self.max_batch):
            chunk = x[start : start + self.max_batch]
            started = time.perf_counter()
            try:
                call = padded(chunk, self.max_batch) if pad else chunk
                if self._executor is None:
                    outputs = run(call)
                else:
                    outputs = await loop.run_in_executor(self._executor, run, call)
            except Exception as exc:  # noqa: BLE001 - these windows go unscored, the rest count
                stats.errors += 1
                error = exc
                continue
            stats.record(len(chunk), time.perf_counter() - started)
            for i in range(len(chunk)):
                rows[start + i] = [output[i] for output in outputs]
        return rows, error

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)


def padded(x: np.ndarray, most: int) -> np.ndarray:
    """``x`` with zero rows appended up to the next power of two (at least 8, at most
    ``most``); callers read only the first ``len(x)`` rows of the outputs."""
    size = min(most, max(8, 1 << (len(x) - 1).bit_length()))
    if size <= len(x):
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), dtype=x.dtype)])


def group_by(keys: Sequence[str]) -> dict[str, list[int]]:
    """Indices of each key, in order."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups
