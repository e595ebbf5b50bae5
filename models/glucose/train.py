"""``bedside train glucose``: simulate the cohort, build samples, fit the GRU, checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streams.scoring.features import GLUCOSE, GLUCOSE_CENTER, contract_hash

from ..nets import GlucoseGRU
from ..training import TrainConfig, fit, save_trained, seed_everything
from .dataset import TEST_PATIENTS, VALIDATION_PATIENTS, GlucoseSamples, cohort, samples, split_of
from .sim import PATIENTS


def tensors(s: GlucoseSamples) -> list[torch.Tensor]:
    return [
        torch.from_numpy(s.x),
        torch.from_numpy(np.log(np.clip(s.future_bg, 20, 600) / GLUCOSE_CENTER)),
        torch.from_numpy(s.hypo.astype(np.float32)),
    ]


def loss(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    x, log_future, hypo = batch
    log_forecast, logits = model.raw(x)  # type: ignore[operator]
    forecast_loss = F.smooth_l1_loss(log_forecast, log_future, beta=0.1)
    return 10 * forecast_loss + F.binary_cross_entropy_with_logits(logits, hypo)


def split_samples(all_samples: GlucoseSamples, names: list[str]) -> dict[str, GlucoseSamples]:
    split = np.array([split_of(names[p]) for p in all_samples.patient])
    return {part: all_samples.subset(split == part) for part in ("train", "validation", "test")}


def train(
    out: Path,
    *,
    patients: tuple[str, ...] = PATIENTS,
    days: int,
    seed: int,
    cache: Path,
    hidden: int,
    config: TrainConfig,
    progress: bool = True,
) -> dict[str, Any]:
    traces = cohort(days, seed, cache, patients)
    parts = split_samples(samples(traces), [t.name for t in traces])
    seed_everything(config.seed, config.threads)  # the initial weights too
    model = GlucoseGRU(hidden=hidden)
    result = fit(
        model,
        loss,
        tensors(parts["train"]),
        tensors(parts["validation"]),
        config,
        progress=progress,
        describe="glucose",
    )
    data = {
        "generator": "simglucose 0.2.11 (UVa/Padova T1D) + models/glucose/sim.py",
        "patients": len(traces),
        "patient_names": list(patients),
        "days_per_patient": days,
        "seed": seed,
        "validation_patients": list(VALIDATION_PATIENTS),
        "test_patients": list(TEST_PATIENTS),
        "samples": {k: int(len(v.x)) for k, v in parts.items()},
    }
    return save_trained(
        out,
        model,
        kind="glucose",
        contract=GLUCOSE,
        contract_hash=contract_hash(GLUCOSE),
        data=data,
        result=result,
        config=config,
    )
