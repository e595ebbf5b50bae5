"""Per-call figures of an ONNX model: light enough to run where no stack is installed (a GPU
machine needs only numpy, pydantic and ONNX Runtime for it)."""

from __future__ import annotations

import statistics
import time

import numpy as np

from streams.scoring.features import CONTRACTS
from streams.scoring.onnx import OnnxModel

BATCHES = (1, 8, 64, 256, 1024)


def per_call(model: OnnxModel, batch: int, seconds: float = 1.0) -> dict[str, float]:
    """Sequences/s and per-call latency (p50, p99) of one model at one batch size."""
    contract = CONTRACTS[model.manifest.feature_contract.name]
    x = np.random.default_rng(0).normal(size=(batch, contract.steps, len(contract.channels)))
    x = x.astype(np.float32)
    for _ in range(3):
        model.run(x)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - started)
    times.sort()
    median = statistics.median(times)
    return {
        "batch": batch,
        "seq_per_s": batch / median,
        "ms_per_call_p50": median * 1000,
        "ms_per_call_p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }
