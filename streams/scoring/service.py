"""The worker's model scoring: the model store, the micro-batcher, and errors as a policy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..settings import ScoringSettings
from .batching import MicroBatcher
from .families import FAMILIES, ModelRequest, ServingModel
from .onnx import ModelStore, OnnxModel

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
        self.batcher = MicroBatcher(
            max_batch=settings.max_batch,
            max_delay_ms=settings.max_delay_ms,
            queue_size=settings.queue_size,
        )
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

    async def score(self, requests: Sequence[ModelRequest]) -> list[list[np.ndarray] | None]:
        """Outputs per request, batched across patients; None where the model failed."""
        results = await asyncio.gather(
            *(self.batcher.submit(r.model.key, r.model.run, r.x) for r in requests),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            self.failed_batches += 1
            log.error("model scoring failed for %d windows: %r", len(failures), failures[0])
        return [None if isinstance(r, BaseException) else r for r in results]

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
                for key, s in self.batcher.stats.items()
            },
            "failed_batches": self.failed_batches,
        }
