"""``bedside train glucose --real``: glucose v2 fitted on real CGM of the training patients.

Target is the future **CGM** reading at +15/30/45/60 min (masked where the sensor had none)
and whether a reading < 70 / < 54 mg/dL follows within 30 min (masked where no reading
does). Inputs are the served feature contract over the serving window (``real.replay``), at
the sensor's own 15-min rate, interpolated to 5 min (``real.interpolate``) and thinned to
30 min (``real.resample``), so the model sees the rates real sensors read at. Validation
patients choose the epoch; test patients choose nothing.
"""

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
from . import real


def tensors(r: real.Replay) -> list[torch.Tensor]:
    known = ~np.isnan(r.future)
    log_future = np.log(
        np.clip(np.nan_to_num(r.future, nan=GLUCOSE_CENTER), 20, 600) / GLUCOSE_CENTER
    )
    return [
        torch.from_numpy(r.x),
        torch.from_numpy(log_future.astype(np.float32)),
        torch.from_numpy(known.astype(np.float32)),
        torch.from_numpy(r.hypo.astype(np.float32)),
        torch.from_numpy(r.hypo_known.astype(np.float32)),
    ]


def loss(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    x, log_future, known, hypo, hypo_known = batch
    log_forecast, logits = model.raw(x)  # type: ignore[operator]
    forecast = F.smooth_l1_loss(log_forecast, log_future, beta=0.1, reduction="none")
    forecast_loss = (forecast * known).sum() / known.sum().clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, hypo, reduction="none")
    hypo_loss = (bce * hypo_known[:, None]).sum() / (2 * hypo_known.sum().clamp(min=1))
    return 10 * forecast_loss + hypo_loss


def parts(visits: list[real.Visit], split: dict[str, str], part: str, dense: bool) -> real.Replay:
    chosen = [v for v in visits if split[v.patient] == part]
    if dense:  # the sensor's 15 min, 5 min interpolated and a 30-min sensor
        chosen += [real.interpolate(v) for v in chosen] + [real.resample(v, 30) for v in chosen]
    return real.replay(chosen)


def train(
    out: Path,
    *,
    data: Path,
    hidden: int,
    config: TrainConfig,
    progress: bool = True,
    limit_patients: int | None = None,
) -> dict[str, Any]:
    visits = real.load_shanghai(data)
    split = real.splits(visits)
    visits = real.limit(visits, split, limit_patients)
    train_part = parts(visits, split, "train", dense=True)
    validation = parts(visits, split, "validation", dense=True)
    seed_everything(config.seed, config.threads)  # the initial weights too
    model = GlucoseGRU(hidden=hidden)
    result = fit(
        model, loss, tensors(train_part), tensors(validation), config, progress=progress,
        describe="glucose (real CGM)",
    )  # fmt: skip
    patients = sorted({v.patient for v in visits})
    described = {
        "source": real.SOURCE,
        "data_dir_layout": str(real.SHANGHAI),
        "target": "future CGM reading (mg/dL) at +15/30/45/60 min",
        "rates": [
            "15-min (as recorded)",
            "5-min (interpolated from the 15-min readings)",
            "30-min (every other reading)",
        ],
        "patients": len(patients),
        "split": {part: sorted(p for p in patients if split[p] == part) for part in real.SPLITS},
        "samples": {"train": len(train_part.now), "validation": len(validation.now)},
        "limit_patients": limit_patients,
        "hypo_base_rate_train": float(train_part.hypo[train_part.hypo_known, 0].mean()),
    }
    return save_trained(
        out,
        model,
        kind="glucose",
        contract=GLUCOSE,
        contract_hash=contract_hash(GLUCOSE),
        data=described,
        result=result,
        config=config,
    )
