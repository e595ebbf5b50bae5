"""A small training loop: seeded, early stopping on validation loss, best checkpoint kept."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation loss before stopping
    seed: int = 7
    threads: int = 2


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def _batches(tensors: Sequence[torch.Tensor], size: int, generator: torch.Generator | None):
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if generator else torch.arange(n)
    for start in range(0, n, size):
        index = order[start : start + size]
        yield [t[index] for t in tensors]


def evaluate_loss(model: nn.Module, loss: LossFn, tensors: Sequence[torch.Tensor]) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in _batches(tensors, 4096, None):
            total += float(loss(model, batch)) * len(batch[0])
            n += len(batch[0])
    return total / max(n, 1)


def fit(
    model: nn.Module,
    loss: LossFn,
    train: Sequence[torch.Tensor],
    validation: Sequence[torch.Tensor],
    config: TrainConfig,
    *,
    progress: bool = True,
    describe: str = "train",
) -> dict[str, Any]:
    """Train in place; the model ends with the weights of its best validation epoch."""
    seed_everything(config.seed, config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
    best, best_state, since_best = float("inf"), copy.deepcopy(model.state_dict()), 0
    history: list[dict[str, float]] = []
    bar = tqdm(range(config.epochs), desc=describe, disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        running, n = 0.0, 0
        for batch in _batches(train, config.batch_size, generator):
            optimiser.zero_grad()
            value = loss(model, batch)
            value.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            running += float(value.detach()) * len(batch[0])
            n += len(batch[0])
        val = evaluate_loss(model, loss, validation)
        scheduler.step(val)
        history.append({"epoch": epoch + 1, "train_loss": running / n, "val_loss": val})
        bar.set_postfix(train=f"{running / n:.4f}", val=f"{val:.4f}")
        if val < best - 1e-5:
            best, best_state, since_best = val, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    model.load_state_dict(best_state)
    return {"history": history, "best_val_loss": best, "epochs_run": len(history)}


def save_checkpoint(path: Path, model: nn.Module, **metadata: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "config": getattr(model, "config", {}),
            "created_at": datetime.now(UTC).isoformat(),
            **metadata,
        },
        path,
    )


def save_trained(
    out: Path,
    model: nn.Module,
    *,
    kind: str,
    contract: Any,
    contract_hash: str,
    data: dict[str, Any],
    result: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any]:
    """Checkpoint a trained model with its size, data description and training history."""
    from .nets import gru_flops, parameter_count

    summary = {
        "parameters": parameter_count(model),
        "flops_per_sequence": gru_flops(model, contract.steps),
        **result,
    }
    save_checkpoint(
        out,
        model,
        kind=kind,
        contract=contract.name,
        contract_hash=contract_hash,
        data=data,
        training=summary,
        train_config=dataclasses.asdict(config),
    )
    return summary


def load_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint
