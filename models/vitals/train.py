"""``bedside train deterioration``: simulate the ward cohort, fit the GRU, checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from streams.scoring.features import VITALS, contract_hash

from ..nets import DeteriorationGRU
from ..training import TrainConfig, fit, save_trained, seed_everything
from .dataset import HORIZON_H, VitalsSamples, cohort, split_of


def tensors(s: VitalsSamples) -> list[torch.Tensor]:
    return [torch.from_numpy(s.x), torch.from_numpy(s.label.astype("float32"))[:, None]]


def loss(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    x, label = batch
    return F.binary_cross_entropy_with_logits(model.raw(x), label)  # type: ignore[operator]


def train(
    out: Path,
    *,
    patients: int,
    days: int,
    seed: int,
    cache: Path,
    hidden: int,
    config: TrainConfig,
    progress: bool = True,
) -> dict[str, Any]:
    s, stay, pattern = cohort(patients, days, seed, cache)
    split = split_of(s.patient, seed)
    seed_everything(config.seed, config.threads)  # the initial weights too
    model = DeteriorationGRU(hidden=hidden)
    result = fit(
        model,
        loss,
        tensors(s.subset(split == "train")),
        tensors(s.subset(split == "validation")),
        config,
        progress=progress,
        describe="deterioration",
    )
    data = {
        "generator": "models/vitals/sim.py (simulated ward patients)",
        "patients": patients,
        "days_per_patient": days,
        "seed": seed,
        "horizon_hours": HORIZON_H,
        "deteriorating_patients": int((pattern != "").sum()),
        "split": "by patient: 70 % train, 10 % validation, 20 % test",
        "samples": {part: int((split == part).sum()) for part in ("train", "validation", "test")},
    }
    return save_trained(
        out,
        model,
        kind="deterioration",
        contract=VITALS,
        contract_hash=contract_hash(VITALS),
        data=data,
        result=result,
        config=config,
    )
