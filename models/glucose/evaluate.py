"""``bedside evaluate glucose``: the model against every baseline on held-out patients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..nets import HORIZONS_MIN, GlucoseGRU
from ..training import load_checkpoint
from . import baselines, metrics
from .dataset import TEST_PATIENTS, VALIDATION_PATIENTS, GlucoseSamples, cohort, samples
from .sim import PATIENTS, STEP_MIN, PatientTrace

FIT_DAYS = 2  # each test patient's first days fit its own AR model and are not scored
ALARM_METHODS = ("model", "ar2", "linear", "threshold_80", "threshold_70")
FORECAST_METHODS = ("model", "last_value", "linear", "ar2", "patient_ar")


def predict(model: GlucoseGRU, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    forecasts, probabilities = [], []
    with torch.no_grad():
        for start in range(0, len(x), 4096):
            f, p = model(torch.from_numpy(x[start : start + 4096]))
            forecasts.append(f.numpy())
            probabilities.append(p.numpy())
    return np.concatenate(forecasts), np.concatenate(probabilities)


def forecasts_for(
    trace: PatientTrace, s: GlucoseSamples, model_forecast: np.ndarray, first_step: int
) -> dict[str, np.ndarray]:
    steps = s.step
    ar = baselines.PatientAR().fit(trace.cgm[:first_step])
    return {
        "model": model_forecast,
        "last_value": baselines.last_value(s.cgm_now, HORIZONS_MIN),
        "linear": baselines.linear(trace.cgm, steps, HORIZONS_MIN),
        "ar2": baselines.ar2(trace.cgm, steps, HORIZONS_MIN),
        "patient_ar": ar.forecast(trace.cgm, steps, HORIZONS_MIN),
    }


def alarm_steps(
    method: str, trace: PatientTrace, s: GlucoseSamples, p_low: np.ndarray, threshold: float
) -> np.ndarray:
    """Steps at which each alarm rule fires (predictive rules only while CGM >= 70)."""
    cgm = s.cgm_now
    armed = cgm >= metrics.LOW
    half_hour = tuple(range(STEP_MIN, 31, STEP_MIN))
    if method == "model":
        fires = armed & (p_low >= threshold)
    elif method == "ar2":
        fires = armed & (baselines.ar2(trace.cgm, s.step, half_hour).min(axis=1) < metrics.LOW)
    elif method == "linear":
        fires = armed & (baselines.linear(trace.cgm, s.step, (30,))[:, 0] < metrics.LOW)
    elif method == "threshold_80":
        fires = cgm < 80
    else:
        fires = cgm < metrics.LOW
    return s.step[fires]


def alarm_score(
    method: str,
    traces: list[PatientTrace],
    s: GlucoseSamples,
    p_low: np.ndarray,
    threshold: float,
    first_step: int,
) -> metrics.AlarmScore:
    total = metrics.AlarmScore(0, 0, 0, 0, 0.0, [])
    for p in np.unique(s.patient):
        mine = s.patient == p
        trace = traces[p]
        steps = alarm_steps(method, trace, s.subset(mine), p_low[mine], threshold)
        total = total + metrics.score_alarms(steps, trace.bg, first_step, len(trace.bg) - 12)
    return total


def choose_threshold(
    traces: list[PatientTrace], s: GlucoseSamples, p_low: np.ndarray
) -> tuple[float, float, list[dict[str, float]]]:
    """On validation patients: the most recall at no more false alarms per day than the
    quietest predictive rule (AR2, linear extrapolation, CGM < 80)."""
    first = metrics.ALARM_HORIZON_STEPS
    budget = min(
        alarm_score(rule, traces, s, p_low, 0.5, first).false_per_day
        for rule in ("ar2", "linear", "threshold_80")
    )
    curve = []
    for threshold in np.round(np.arange(0.05, 0.96, 0.05), 2):
        a = alarm_score("model", traces, s, p_low, float(threshold), first)
        curve.append(
            {
                "threshold": float(threshold),
                "recall": a.recall,
                "false_per_day": a.false_per_day,
                "precision": a.precision,
            }
        )
    allowed = [c for c in curve if c["false_per_day"] <= budget]
    best = max(allowed, key=lambda c: (c["recall"], c["threshold"])) if allowed else curve[-1]
    return best["threshold"], budget, curve


def evaluate(checkpoint_path: Path, reports: Path, cache: Path) -> dict[str, Any]:
    checkpoint = load_checkpoint(checkpoint_path)
    model = GlucoseGRU(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    data = checkpoint["data"]
    patients = tuple(data.get("patient_names", PATIENTS))
    traces = cohort(data["days_per_patient"], data["seed"], cache, patients)
    names = [t.name for t in traces]
    all_samples = samples(traces)
    forecast, probability = predict(model, all_samples.x)
    p_low = probability[:, 0]

    validation = np.isin(np.array(names)[all_samples.patient], VALIDATION_PATIENTS)
    threshold, budget, validation_curve = choose_threshold(
        traces, all_samples.subset(validation), p_low[validation]
    )
    fit_days = min(FIT_DAYS, data["days_per_patient"] // 2)
    first_step = fit_days * 1440 // STEP_MIN
    test = np.isin(np.array(names)[all_samples.patient], TEST_PATIENTS) & (
        all_samples.step >= first_step
    )
    s = all_samples.subset(test)
    predictions: dict[str, list[np.ndarray]] = {m: [] for m in FORECAST_METHODS}
    lags: dict[str, list[float]] = {m: [] for m in FORECAST_METHODS}
    for p in np.unique(s.patient):
        mine = s.patient == p
        per = forecasts_for(traces[p], s.subset(mine), forecast[test][mine], first_step)
        for method, values in per.items():
            predictions[method].append(values)
            lags[method].append(
                metrics.time_lag_minutes(values[:, 1], traces[p].bg, s.step[mine], 30 // STEP_MIN)
            )
    forecast_table = _forecast_table(predictions, lags, s.future_bg)
    alarm_table = _alarm_table(traces, s, p_low[test], threshold, first_step)
    test_curve = []
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        a = alarm_score("model", traces, s, p_low[test], float(t), first_step)
        test_curve.append(
            {"threshold": float(t), "recall": a.recall, "false_per_day": a.false_per_day}
        )
    artefact_alarms = _artefact_false_alarms(traces, s, p_low[test], threshold)
    result = {
        "model": "glucose",
        "checkpoint": str(checkpoint_path),
        "checkpoint_created_at": checkpoint["created_at"],
        "training": checkpoint["training"],
        "data": data,
        "threshold_p_low_30": threshold,
        "validation_false_alarm_budget": budget,
        "validation_curve": validation_curve,
        "test_curve": test_curve,
        "forecast": forecast_table,
        "alarms": alarm_table,
        "false_alarms_in_compression_lows": artefact_alarms,
        "test_patient_days": alarm_table["model"]["patient_days"],
        "test_samples": int(len(s.x)),
        "fit_days": fit_days,
    }
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "glucose.json").write_text(json.dumps(result, indent=2, default=float))
    from .report import write_report

    write_report(result, traces, s, predictions, p_low[test], reports)
    return result


def _forecast_table(
    predictions: dict[str, list[np.ndarray]], lags: dict[str, list[float]], truth: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per forecasting method: RMSE and MAE per horizon, Clarke zones and lag at 30 min."""
    table = {}
    for method in FORECAST_METHODS:
        values = np.concatenate(predictions[method])
        table[method] = {
            **{
                f"rmse_{h}": metrics.rmse(values[:, k], truth[:, k])
                for k, h in enumerate(HORIZONS_MIN)
            },
            **{
                f"mae_{h}": metrics.mae(values[:, k], truth[:, k])
                for k, h in enumerate(HORIZONS_MIN)
            },
            "clarke_30": metrics.clarke_zones(truth[:, 1], values[:, 1]),
            "lag_30_min": float(np.median(lags[method])),
        }
    return table


def _alarm_table(
    traces: list[PatientTrace],
    s: GlucoseSamples,
    p_low: np.ndarray,
    threshold: float,
    first_step: int,
) -> dict[str, dict[str, Any]]:
    """Per alarm method: event-level recall, precision, false alarms a day and lead."""
    table = {}
    for method in ALARM_METHODS:
        a = alarm_score(method, traces, s, p_low, threshold, first_step)
        table[method] = {
            "alarms": a.alarms,
            "precision": a.precision,
            "recall": a.recall,
            "false_per_day": a.false_per_day,
            "median_lead_min": a.median_lead,
            "events": a.events,
            "detected": a.detected,
            "patient_days": a.days,
        }
    return table


def _artefact_false_alarms(
    traces: list[PatientTrace], s: GlucoseSamples, p_low: np.ndarray, threshold: float
) -> dict[str, int]:
    """Alarm firings during sensor compression lows, per method: a failure mode to watch."""
    out = {}
    for method in ("model", "ar2", "threshold_70"):
        count = 0
        for p in np.unique(s.patient):
            mine = s.patient == p
            steps = alarm_steps(method, traces[p], s.subset(mine), p_low[mine], threshold)
            count += int(traces[p].artefact[steps].sum())
        out[method] = count
    return out
