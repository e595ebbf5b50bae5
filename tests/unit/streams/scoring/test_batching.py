"""Batched model calls: a batch's windows share calls of at most max_batch, each window gets
its own row back, and a failing call leaves only its own windows unscored."""

from __future__ import annotations

import numpy as np
import pytest

from streams.scoring.batching import ModelCalls, group_by, padded


def doubling(calls: list[int]):
    def run(x: np.ndarray) -> list[np.ndarray]:
        calls.append(len(x))
        return [x * 2, x.sum(axis=1)]

    return run


@pytest.mark.parametrize("threaded", [False, True])
async def test_windows_are_scored_in_calls_of_at_most_max_batch(threaded: bool) -> None:
    """On the event loop (the default) or a worker thread, the same calls and rows."""
    calls: list[int] = []
    model = ModelCalls(max_batch=64, threaded=threaded)
    x = np.arange(150 * 3, dtype=np.float32).reshape(150, 3)
    rows, error = await model.run("m@1", doubling(calls), x)
    model.close()
    assert error is None and calls == [64, 64, 22]
    for i, row in enumerate(rows):
        assert row is not None
        np.testing.assert_array_equal(row[0], x[i] * 2)
        assert row[1] == x[i].sum()
    assert model.stats["m@1"].windows == 150 and model.stats["m@1"].largest == 64


async def test_a_failing_call_leaves_only_its_windows_unscored() -> None:
    model = ModelCalls(max_batch=2)

    def broken_first(x: np.ndarray) -> list[np.ndarray]:
        if x[0, 0] == 0:
            raise RuntimeError("model failed")
        return [x + 1]

    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    rows, error = await model.run("m@1", broken_first, x)
    model.close()
    assert isinstance(error, RuntimeError)
    assert rows[0] is None and rows[1] is None
    assert [float(r[0][0]) for r in rows[2:] if r is not None] == [3.0, 4.0, 5.0]
    assert model.stats["m@1"].errors == 1 and model.stats["m@1"].windows == 3


def test_group_by_keeps_the_order_within_each_key() -> None:
    assert group_by(["a", "b", "a", "c", "b"]) == {"a": [0, 2], "b": [1, 4], "c": [3]}


async def test_padded_calls_meet_few_shapes_and_return_only_real_rows() -> None:
    calls: list[int] = []
    model = ModelCalls(max_batch=64)
    x = np.arange(150 * 3, dtype=np.float32).reshape(150, 3)
    rows, error = await model.run("m@1", doubling(calls), x, pad=True)
    small, _ = await model.run("m@1", doubling(calls), x[:3], pad=True)
    model.close()
    assert error is None and calls == [64, 64, 32, 8]  # 22 rows padded to 32, 3 to 8
    assert len(rows) == 150 and len(small) == 3
    for i, row in enumerate(rows):
        assert row is not None and row[1] == x[i].sum()
    assert model.stats["m@1"].windows == 153  # real windows, not padding


def test_padding_stops_at_max_batch() -> None:
    assert len(padded(np.zeros((5, 2)), 4)) == 5
    assert len(padded(np.zeros((100, 2)), 1024)) == 128
    assert len(padded(np.zeros((128, 2)), 1024)) == 128


async def test_a_window_whose_input_cannot_be_built_goes_unscored_alone() -> None:
    """Inputs are built for the whole batch at once; one window that breaks the builder
    must not leave the others unscored (nor raise out of the batch step)."""
    from dataclasses import replace

    from streams.scoring.base import PatientProfile
    from streams.scoring.families import FAMILIES, ModelRequest, ServingModel
    from streams.scoring.manifest import Manifest
    from streams.scoring.onnx import SHIPPED_MODELS
    from streams.scoring.service import ModelScoring
    from streams.settings import ScoringSettings
    from streams.windows.patient import PatientWindow

    def inputs(windows, profiles):  # type: ignore[no-untyped-def]
        if any(w.patient_id == "poisoned" for w in windows):
            raise ValueError("a window the builder cannot read")
        return np.ones((len(windows), 2, 3), dtype=np.float32)

    family = replace(FAMILIES["glucose"], inputs=inputs)
    manifest = Manifest.read(SHIPPED_MODELS / "glucose" / "2.3.0" / "manifest.json")
    model = ServingModel(family, "primary", manifest, lambda x: [x.sum(axis=(1, 2))])
    scoring = ModelScoring(ScoringSettings(models=[]))
    ids = ["a", "poisoned", "b"]
    requests = [ModelRequest(model, PatientWindow(p), PatientProfile()) for p in ids]
    results = await scoring.score(requests)
    scoring.calls.close()
    assert results[1] is None and scoring.failed_batches == 1
    assert [float(r[0]) for r in (results[0], results[2]) if r is not None] == [6.0, 6.0]
