"""The glucose report: markdown tables and PNG plots in ``models/reports/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..nets import HORIZONS_MIN  # noqa: E402
from .dataset import GlucoseSamples  # noqa: E402
from .sim import STEP_MIN, PatientTrace  # noqa: E402

NAMES = {
    "model": "GRU (Bedside)",
    "last_value": "last value",
    "linear": "linear extrapolation (15 min)",
    "ar2": "Nightscout AR2",
    "patient_ar": "per-patient AR(6)",
    "threshold_80": "CGM < 80 mg/dL",
    "threshold_70": "CGM < 70 mg/dL (reactive)",
}


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def write_report(
    result: dict[str, Any],
    traces: list[PatientTrace],
    s: GlucoseSamples,
    predictions: dict[str, list[np.ndarray]],
    p_low: np.ndarray,
    out: Path,
) -> None:
    _plot_clarke(s.future_bg[:, 1], np.concatenate(predictions["model"])[:, 1], out)
    _plot_alarm_curve(result, out)
    _plot_example(traces, s, predictions, out)
    lines = [
        "# Glucose forecaster: evaluation on held-out virtual patients",
        "",
        f"Test: {len(result['data']['test_patients'])} virtual patients never seen in training "
        f"or tuning ({', '.join(result['data']['test_patients'])}), "
        f"{_fmt(result['test_patient_days'])} patient-days after each patient's first "
        f"{result['fit_days']} days "
        f"(used only to fit the per-patient AR baseline); {result['test_samples']} forecasts. "
        "Truth is the simulator's plasma glucose; every method sees the same noisy CGM.",
        "",
        "## Forecast accuracy (mg/dL)",
        "",
        "| method | RMSE 15 | RMSE 30 | RMSE 60 | MAE 15 | MAE 30 | MAE 60 | Clarke A+B (30) "
        "| Clarke A (30) | lag at 30 min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in result["forecast"].items():
        z = row["clarke_30"]
        lines.append(
            f"| {NAMES[method]} | {_fmt(row['rmse_15'])} | {_fmt(row['rmse_30'])} | "
            f"{_fmt(row['rmse_60'])} | {_fmt(row['mae_15'])} | {_fmt(row['mae_30'])} | "
            f"{_fmt(row['mae_60'])} | {_fmt(100 * (z['A'] + z['B']))} % | "
            f"{_fmt(100 * z['A'])} % | {_fmt(row['lag_30_min'], 0)} min |"
        )
    threshold = result["threshold_p_low_30"]
    lines += [
        "",
        "Time lag: how many minutes behind the truth the 30-minute forecast runs (the shift "
        "that best aligns it with the true glucose); 30 min for a forecast that just repeats "
        "the last value.",
        "",
        "## Hypoglycaemia alarms (true glucose < 70 mg/dL for >= 15 min, within 30 min)",
        "",
        f"Model operating point: P(< 70 within 30 min) >= {threshold:.2f}, chosen on the "
        "validation patients as the most recall at no more false alarms per day than the "
        "quietest predictive rule there (AR2, linear extrapolation, CGM < 80: "
        f"{result['validation_false_alarm_budget']:.2f} per patient-day). "
        "Predictive rules alarm only while the CGM reads >= 70 mg/dL. An alarm episode is "
        "true when an event starts within 30 min or glucose is already < 70; an event is "
        "detected when an alarm precedes its onset by 0-30 min (the lead).",
        "",
        "| rule | alarms | precision | recall | false alarms / patient-day | median lead |",
        "|---|---|---|---|---|---|",
    ]
    for method, row in result["alarms"].items():
        lines.append(
            f"| {NAMES[method]} | {row['alarms']} | {_fmt(100 * row['precision'])} % | "
            f"{_fmt(100 * row['recall'])} % ({row['detected']}/{row['events']}) | "
            f"{_fmt(row['false_per_day'], 2)} | {_fmt(row['median_lead_min'], 0)} min |"
        )
    lines += _closing_section(result)
    (out / "glucose.md").write_text("\n".join(lines))


def _closing_section(result: dict[str, Any]) -> list[str]:
    """The report's literature anchor, artefact alarms, plots and model size."""
    artefacts = result["false_alarms_in_compression_lows"]
    return [
        "",
        "Literature anchor: 88 % recall at 0.29 false alarms/day with a 15-minute lead "
        "(real CGM data, a different event definition); our figures are on simulated "
        "patients and are not directly comparable.",
        "",
        "Alarm firings during simulated sensor compression lows (false lows): "
        + ", ".join(f"{NAMES[m]} {n}" for m, n in artefacts.items())
        + ".",
        "",
        "![Clarke error grid](glucose_clarke.png)",
        "![Alarm trade-off](glucose_alarms.png)",
        "![Example day](glucose_example.png)",
        "",
        f"Model: {result['training']['parameters']} parameters, "
        f"{result['training']['flops_per_sequence']} FLOPs per sequence; "
        f"{result['training']['epochs_run']} epochs, best validation loss "
        f"{result['training']['best_val_loss']:.4f}.",
        "",
    ]


def _plot_clarke(reference: np.ndarray, predicted: np.ndarray, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(reference, predicted, s=2, alpha=0.3)
    ax.plot([0, 400], [0, 400], "k:", lw=0.8)
    for x, y in (([0, 400], [0, 480]), ([0, 400], [0, 320])):
        ax.plot(x, y, "k-", lw=0.5)
    ax.axvline(70, color="k", lw=0.5)
    ax.axhline(70, color="k", lw=0.5)
    ax.axhline(180, color="k", lw=0.5)
    ax.set(
        xlim=(0, 400),
        ylim=(0, 400),
        xlabel="true glucose in 30 min (mg/dL)",
        ylabel="GRU forecast (mg/dL)",
        title="Clarke error grid, 30-min forecast",
    )
    fig.tight_layout()
    fig.savefig(out / "glucose_clarke.png", dpi=110)
    plt.close(fig)


def _plot_alarm_curve(result: dict[str, Any], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    curve = result["test_curve"]
    ax.plot(
        [c["false_per_day"] for c in curve],
        [100 * c["recall"] for c in curve],
        "-o",
        ms=3,
        label="GRU, thresholds 0.05-0.95",
    )
    for method, row in result["alarms"].items():
        if method != "model":
            ax.plot(row["false_per_day"], 100 * row["recall"], "s", label=NAMES[method])
    chosen = result["alarms"]["model"]
    ax.plot(
        chosen["false_per_day"],
        100 * chosen["recall"],
        "r*",
        ms=12,
        label="GRU at the chosen threshold",
    )
    ax.set(
        xlabel="false alarms per patient-day",
        ylabel="events warned 0-30 min ahead (%)",
        title="Hypoglycaemia alarms, held-out patients",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "glucose_alarms.png", dpi=110)
    plt.close(fig)


def _plot_example(
    traces: list[PatientTrace],
    s: GlucoseSamples,
    predictions: dict[str, list[np.ndarray]],
    out: Path,
) -> None:
    patients = list(np.unique(s.patient))
    # the test patient with the most time below 70 makes the most telling picture
    p = max(patients, key=lambda q: int((traces[q].bg < 70).sum()))
    k = patients.index(p)
    mine = s.patient == p
    steps = s.step[mine]
    day = steps[: 1440 // STEP_MIN]
    hours = (day - day[0]) * STEP_MIN / 60
    trace = traces[p]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(hours, trace.bg[day], "k-", lw=1.2, label="true glucose")
    ax.plot(hours, trace.cgm[day], ".", ms=3, color="grey", label="CGM")
    shift = HORIZONS_MIN[1] / 60
    n = len(day)
    ax.plot(hours + shift, predictions["model"][k][:n, 1], lw=1, label="GRU 30-min forecast")
    ax.plot(
        hours + shift, predictions["ar2"][k][:n, 1], lw=1, alpha=0.7, label="AR2 30-min forecast"
    )
    ax.axhline(70, color="r", lw=0.6, ls="--")
    ax.set(xlabel="hours", ylabel="mg/dL", title=f"{trace.name}: one held-out day")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "glucose_example.png", dpi=110)
    plt.close(fig)
