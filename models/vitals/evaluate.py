"""``bedside evaluate deterioration``: the GRU against NEWS2 on held-out simulated patients,
and a smoke test on the real MIMIC-IV demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metrics as m
from ..nets import DeteriorationGRU
from ..training import load_checkpoint
from .dataset import VitalsSamples, cohort, split_of
from .sim import HOUR_MIN

MIMIC_HORIZONS_H = (12, 24)


def predict(model: DeteriorationGRU, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + 4096]))[:, 0].numpy() for i in range(0, len(x), 4096)]
        )


def discrimination(s: VitalsSamples, p: np.ndarray, rounds: int) -> dict[str, Any]:
    news2 = np.nan_to_num(s.news2)
    out: dict[str, Any] = {
        "samples": int(len(p)),
        "positives": int(s.label.sum()),
        "patients": int(len(np.unique(s.patient))),
    }
    for name, score in (("model", p), ("news2", news2)):
        out[name] = {
            "auroc": m.auroc(s.label, score),
            "auroc_ci": m.bootstrap_ci(
                lambda i, sc=score: m.auroc(s.label[i], sc[i]), s.patient, rounds
            ),
            "auprc": m.auprc(s.label, score),
            "auprc_ci": m.bootstrap_ci(
                lambda i, sc=score: m.auprc(s.label[i], sc[i]), s.patient, rounds
            ),
        }
    out["model"]["ece"] = m.ece(s.label, p)
    out["prevalence"] = float(s.label.mean())
    return out


def threshold_at_sensitivity(y: np.ndarray, p: np.ndarray, sensitivity: float) -> float:
    """The highest model threshold whose sensitivity reaches ``sensitivity``."""
    positives = np.sort(p[y])[::-1]
    k = int(np.ceil(sensitivity * len(positives))) - 1
    return float(positives[max(k, 0)])


def operating_points(
    s: VitalsSamples, p: np.ndarray, stay_minutes: np.ndarray, event_minute: dict[int, int]
) -> list[dict[str, Any]]:
    """At NEWS2 >= 5 and >= 7: sensitivity, alerts per patient-day, and the model matched."""
    days = stay_minutes[np.unique(s.patient)].sum() / (24 * HOUR_MIN)
    news2 = np.nan_to_num(s.news2)
    rows = []
    for cut in (5, 7):
        fires = news2 >= cut
        sensitivity = float(fires[s.label].mean())
        threshold = threshold_at_sensitivity(s.label, p, sensitivity)
        model_fires = p >= threshold
        rows.append(
            {
                "news2_cut": cut,
                "sensitivity": sensitivity,
                "news2_alerts_per_patient_day": float(fires.sum() / days),
                "news2_precision": float(s.label[fires].mean()) if fires.any() else float("nan"),
                "news2_event_recall_and_lead": _event_lead(s, fires, event_minute),
                "model_threshold": threshold,
                "model_sensitivity": float(model_fires[s.label].mean()),
                "model_alerts_per_patient_day": float(model_fires.sum() / days),
                "model_precision": float(s.label[model_fires].mean()),
                "model_event_recall_and_lead": _event_lead(s, model_fires, event_minute),
            }
        )
    return rows


def _event_lead(s: VitalsSamples, fires: np.ndarray, event_minute: dict[int, int]) -> dict:
    """Share of deteriorating patients warned within 12 h before the event; median lead (h)."""
    warned, leads = 0, []
    for patient, event in event_minute.items():
        mine = (s.patient == patient) & fires & s.label
        if mine.any():
            warned += 1
            leads.append((event - s.minute[mine].min()) / HOUR_MIN)
    n = len(event_minute)
    return {
        "recall": warned / n if n else float("nan"),
        "median_lead_h": float(np.median(leads)) if leads else float("nan"),
    }


def evaluate(checkpoint_path: Path, reports: Path, cache: Path, rounds: int = 300) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    model = DeteriorationGRU(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    data = checkpoint["data"]
    s, stay, pattern = cohort(data["patients"], data["days_per_patient"], data["seed"], cache)
    split = split_of(s.patient, data["seed"])
    test = s.subset(split == "test")
    p = predict(model, test.x)
    event_minute = {}
    for patient in np.unique(test.patient):
        if pattern[patient]:
            event_minute[int(patient)] = int(stay[patient])  # the stay ends at the event
    result: dict[str, Any] = {
        "model": "deterioration",
        "checkpoint": str(checkpoint_path),
        "checkpoint_created_at": checkpoint["created_at"],
        "training": checkpoint["training"],
        "data": data,
        "simulated": discrimination(test, p, rounds),
        "operating_points": operating_points(test, p, stay, event_minute),
    }
    threshold = result["operating_points"][0]["model_threshold"]
    news2_fires = np.nan_to_num(test.news2) >= 5
    result["by_pattern"] = {}
    for name in sorted({str(pattern[q]) for q in event_minute}):
        events = {q: t for q, t in event_minute.items() if pattern[q] == name}
        result["by_pattern"][name] = {
            "patients": len(events),
            "model": _event_lead(test, p >= threshold, events),
            "news2_5": _event_lead(test, news2_fires, events),
        }
    result["recommended_threshold"] = result["operating_points"][0]["model_threshold"]
    predicted, observed, counts = m.reliability(test.label, p)
    result["reliability"] = {
        "predicted": predicted.tolist(),
        "observed": observed.tolist(),
        "counts": counts.tolist(),
    }
    from .mimic import mimic_samples

    result["mimic"] = {}
    for horizon in MIMIC_HORIZONS_H:
        real = mimic_samples(horizon)
        q = predict(model, real.x)
        result["mimic"][f"{horizon}h"] = discrimination(real, q, rounds)
        if horizon == max(MIMIC_HORIZONS_H):
            result["mimic"]["ece"] = m.ece(real.label, q)
            result["mimic"]["mean_predicted"] = float(q.mean())
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "deterioration.json").write_text(json.dumps(result, indent=2, default=float))
    from .report import write_report

    write_report(result, test, p, reports)
    return result
