"""Micro-batching: concurrent windows share calls, rows return to their callers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streams.scoring.batching import MicroBatcher


def doubling(calls: list[int]):
    def run(x: np.ndarray) -> list[np.ndarray]:
        calls.append(len(x))
        return [x * 2, x.sum(axis=1)]

    return run


async def test_concurrent_windows_are_scored_in_batches_of_at_most_max_batch() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(max_batch=64, max_delay_ms=20)
    inputs = [np.full(3, i, np.float32) for i in range(150)]
    results = await asyncio.gather(*(batcher.submit("m@1", doubling(calls), x) for x in inputs))
    await batcher.close()
    assert sum(calls) == 150 and max(calls) <= 64 and len(calls) <= 4
    for i, (doubled, total) in enumerate(results):
        assert (doubled == 2 * i).all() and total == 3 * i  # each caller gets its own row
    assert batcher.stats["m@1"].windows == 150


async def test_one_at_a_time_when_max_batch_is_one() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(max_batch=1, max_delay_ms=0)
    await asyncio.gather(*(batcher.submit("m@1", doubling(calls), np.zeros(2)) for _ in range(5)))
    await batcher.close()
    assert calls == [1] * 5


async def test_a_lone_window_waits_no_longer_than_max_delay() -> None:
    batcher = MicroBatcher(max_batch=256, max_delay_ms=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.submit("m@1", doubling([]), np.zeros(2))
    await batcher.close()
    assert loop.time() - started < 1.0


async def test_a_failing_model_fails_its_callers_and_keeps_serving() -> None:
    batcher = MicroBatcher(max_batch=8, max_delay_ms=1)

    def broken(x: np.ndarray) -> list[np.ndarray]:
        raise RuntimeError("onnx runtime error")

    with pytest.raises(RuntimeError, match="onnx runtime error"):
        await batcher.submit("m@1", broken, np.zeros(2))
    (row,) = await batcher.submit("m@1", lambda x: [x + 1], np.zeros(2))
    await batcher.close()
    assert (row == 1).all() and batcher.stats["m@1"].errors == 1


async def test_the_queue_is_bounded() -> None:
    release = asyncio.Event()
    batcher = MicroBatcher(max_batch=1, max_delay_ms=0, queue_size=2)
    loop = asyncio.get_running_loop()

    def slow(x: np.ndarray) -> list[np.ndarray]:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return [x]

    tasks = [asyncio.create_task(batcher.submit("m@1", slow, np.zeros(1))) for _ in range(6)]
    await asyncio.sleep(0.1)
    # one in the model, two queued: the other callers wait to enqueue (backpressure)
    assert batcher._queues["m@1"].queue.qsize() == 2
    release.set()
    await asyncio.gather(*tasks)
    await batcher.close()
