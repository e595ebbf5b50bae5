"""The worker's model scoring: the model store, batched calls, and errors as a policy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..settings import ScoringSettings
from .batching import ModelCalls, group_by
from .families import FAMILIES, ModelRequest, ServingModel, inputs_of
from .onnx import CUDA, ModelStore, OnnxModel

log = logging.getLogger(__name__)


def serving(model: OnnxModel, role: str) -> ServingModel:
    return ServingModel(FAMILIES[model.manifest.family], role, model.manifest, model.run)  # type: ignore[arg-type]


class ModelScoring:
    """Loads the configured models at start (a bad model stops the worker with its reason)."""

    def __init__(self, settings: ScoringSettings) -> None:
        self.settings = settings
        self.store = ModelStore(
            settings.model_dir,
            list(settings.models),
            pinned=dict(settings.versions),
            shadow=dict(settings.shadow),
            provider=settings.provider,
            threads=settings.intra_op_threads,
        )
        self.calls = ModelCalls(max_batch=settings.max_batch, threaded=settings.threaded)
        self.failed_batches = 0
        if settings.models:
            self.store.load()

    def serving_models(self) -> list[ServingModel]:
        models = []
        for loaded in self.store.loaded.values():
            models.append(serving(loaded.primary, "primary"))
            if loaded.shadow is not None:
                models.append(serving(loaded.shadow, "shadow"))
        return models

    @property
    def on_gpu(self) -> set[str]:
        """Keys of the loaded models a GPU runs (their calls are padded)."""
        return {
            m.key
            for loaded in self.store.loaded.values()
            for m in (loaded.primary, loaded.shadow)
            if m is not None and m.provider == CUDA
        }

    async def score(self, requests: Sequence[ModelRequest]) -> list[list[np.ndarray] | None]:
        """Outputs per request, batched across patients; None where the model failed or the
        window's input could not be built (the others are scored all the same)."""
        results: list[list[np.ndarray] | None] = [None] * len(requests)
        failures: list[BaseException] = []
        on_gpu = self.on_gpu
        for key, indices in group_by([r.model.key for r in requests]).items():
            built = self._inputs(key, indices, requests, failures)
            if built is None:
                continue
            indices, x = built
            run = requests[indices[0]].model.run
            rows, error = await self.calls.run(key, run, x, pad=key in on_gpu)
            for index, row in zip(indices, rows, strict=True):
                results[index] = row
            if error is not None:
                failures.append(error)
        if failures:
            self.failed_batches += 1
            unscored = sum(r is None for r in results)
            log.error("model scoring failed for %d windows: %r", unscored, failures[0])
        return results

    @staticmethod
    def _inputs(
        key: str,
        indices: list[int],
        requests: Sequence[ModelRequest],
        failures: list[BaseException],
    ) -> tuple[list[int], np.ndarray] | None:
        """The inputs of one model's requests as one array; when building them fails, the
        windows are built one by one and those that fail are left out (contained)."""
        try:
            return indices, inputs_of([requests[i] for i in indices])
        except Exception as exc:  # noqa: BLE001 - one patient's window must not stop the rest
            failures.append(exc)
        kept = []
        for index in indices:
            try:
                inputs_of([requests[index]])
            except Exception:  # noqa: BLE001, S112 - this window goes unscored, counted above
                log.error("the %s input of a window could not be built; unscored", key)
                continue
            kept.append(index)
        if not kept:
            return None
        return kept, np.stack([requests[i].x for i in kept])  # type: ignore[misc]  # built

    def describe(self) -> dict[str, Any]:
        return {
            "models": self.store.describe(),
            "batches": {
                key: {
                    "calls": s.calls,
                    "windows": s.windows,
                    "mean_batch": s.windows / s.calls if s.calls else 0,
                    "largest_batch": s.largest,
                    "errors": s.errors,
                }
                for key, s in self.calls.stats.items()
            },
            "failed_batches": self.failed_batches,
        }
