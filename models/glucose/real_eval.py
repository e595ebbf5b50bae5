"""Figures of a glucose model and the rules it replaces on replayed real CGM.

Forecasts per horizon (n, RMSE, MAE against the future CGM reading) for the model, the
served forecast (gated), Nightscout's AR2 as served, last value and linear extrapolation;
hypoglycaemia alarms (``events``) for ``predicted_low``, AR2 and CGM < 80; and the
calibration of P(< 70 within 30 min) against a constant rate (the training patients').
The keys are those ``bedside evaluate glucose --cgm --json`` writes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streams.scoring.families import GLUCOSE_PROBABILITIES, HORIZONS_MIN, predicted_low_fires
from streams.scoring.features import glucose_trend
from streams.scoring.manifest import Calibration, PredictedLowRule
from streams.scoring.personal import SETTLE_MS, personal_forecast

from ..metrics import AlarmScore
from . import events
from .real import Replay, Visit

FORECASTS = ("model", "served", "ar2", "last", "linear")
ALARMS = ("predicted_low", "ar2", "cgm_below_75", "cgm_below_80", "cgm_below_85", "cgm_below_90")


def served_forecast(r: Replay, model: np.ndarray, gate: Sequence[str]) -> np.ndarray:
    """Per horizon the model's forecast where the gate says ``model``, else AR2's."""
    use = np.array([g == "model" for g in gate])
    return np.where(use[None, :], model, r.ar2)


def forecast_table(r: Replay, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for k, horizon in enumerate(HORIZONS_MIN):
        truth = r.future[:, k]
        known = ~np.isnan(truth)
        row = {}
        for method, values in predictions.items():
            error = values[known, k] - truth[known]
            row[method] = {
                "n": int(known.sum()),
                "rmse": round(float(np.sqrt(np.mean(error**2))), 2) if known.any() else None,
                "mae": round(float(np.mean(np.abs(error))), 2) if known.any() else None,
            }
        table[str(horizon)] = row
    return table


def alarm_score(visits: Sequence[Visit], r: Replay, fired: np.ndarray) -> AlarmScore:
    """One rule's alarms (``fired``: a boolean per sample) against every visit's events."""
    total = AlarmScore()
    for index in np.unique(r.visit):
        visit, mine = visits[int(index)], r.visit == index
        alarm_times = r.t_ms[mine & fired] / 60_000
        total = total + events.score_visit(visit.times_ms / 60_000, visit.mg_dl, alarm_times)
    return total


def alarm_table(visits: Sequence[Visit], r: Replay, fires: dict[str, np.ndarray]) -> dict[str, Any]:
    """Event-based alarm figures per rule; ``fires`` is a boolean per sample."""
    return {rule: alarm_score(visits, r, fired).summary() for rule, fired in fires.items()}


def calibrated(fitted: Mapping[str, Calibration], probability: np.ndarray) -> np.ndarray:
    """The model's probability columns (``GLUCOSE_PROBABILITIES``) as they serve: each
    through its calibration where ``fitted`` has one, raw where it has none."""
    return np.stack(
        [
            np.asarray(fitted[name].apply(probability[:, k]))
            if name in fitted
            else probability[:, k]
            for k, name in enumerate(GLUCOSE_PROBABILITIES)
        ],
        axis=1,
    )


def calibration(p_low: np.ndarray, r: Replay, base_rate: float) -> dict[str, Any]:
    known = r.hypo_known
    y = r.hypo[known, 0].astype(float)
    p = p_low[known].astype(float)
    bins = np.clip((p * 10).astype(int), 0, 9)
    return {
        "n": int(known.sum()),
        "mean_predicted": round(float(p.mean()), 4),
        "observed": round(float(y.mean()), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 5),
        "brier_constant": round(float(np.mean((base_rate - y) ** 2)), 5),
        "constant_rate": round(base_rate, 4),
        "reliability": [
            {
                "bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}",
                "n": int((bins == b).sum()),
                "mean_predicted": round(float(p[bins == b].mean()), 4),
                "observed": round(float(y[bins == b].mean()), 4),
            }
            for b in range(10)
            if (bins == b).any()
        ],
    }


def model_alarm(
    r: Replay, p_low: np.ndarray, threshold: float, rule: PredictedLowRule
) -> np.ndarray:
    """Where the model's ``predicted_low`` holds, exactly as serving decides it."""
    trend = glucose_trend(r.x)
    return predicted_low_fires(p_low, r.now, trend, threshold=threshold, rule=rule, low=events.LOW)


def evaluate(
    visits: Sequence[Visit],
    r: Replay,
    forecast: np.ndarray,
    p_low: np.ndarray,
    *,
    threshold: float,
    base_rate: float,
    gate: Sequence[str],
    alarm_source: str,
    rule: PredictedLowRule = "probability",
    personal: Sequence[str] = (),
    cgm_below: float | None = None,
) -> dict[str, Any]:
    """Every figure for one set of samples; ``alarm_source`` is what drives predicted_low
    in serving (``model`` or ``ar2``), ``rule`` when the model's alarm holds, ``cgm_below``
    the CGM level that also raises it (any-of); ``personal`` the horizons at which the
    per-patient adaptation serves."""
    model_fires = model_alarm(r, p_low, threshold, rule)
    served = model_fires | (r.now < cgm_below) if cgm_below is not None else model_fires
    fires = {
        "predicted_low": served if alarm_source == "model" else r.ar2_low,
        "model": model_fires,
        "ar2": r.ar2_low,
        # the thresholds a nurse could set on any CGM system (while not yet below 70)
        **{f"cgm_below_{t}": r.now < t for t in (75, 80, 85, 90)},
    }
    predictions = {
        "model": forecast,
        "served": served_forecast(r, adapted(visits, r, forecast, personal), gate),
        "ar2": r.ar2,
        "last": np.repeat(r.now[:, None], len(HORIZONS_MIN), axis=1),
        "linear": r.linear,
    }
    return {
        "samples": len(r.now),
        "patients": len(set(r.patient.tolist())),
        "horizons": forecast_table(r, predictions),
        "alarms": alarm_table(visits, r, fires),
        "calibration": calibration(p_low, r, base_rate),
    }


def adapted(
    visits: Sequence[Visit], r: Replay, forecast: np.ndarray, horizons: Sequence[str]
) -> np.ndarray:
    """The model's forecast with the per-patient adaptation at ``horizons``, as served."""
    if not horizons:
        return forecast
    use = np.array([str(h) in horizons for h in HORIZONS_MIN])
    return np.where(use[None, :], personalised(visits, r, forecast), forecast)


def personalised(visits: Sequence[Visit], r: Replay, forecast: np.ndarray) -> np.ndarray:
    """The forecast adapted per patient online, exactly as the stream adapts it
    (``streams.scoring.personal.personal_forecast`` over the last 70 min of readings):
    each visit from its first reading, in time order."""
    adapted = np.array(forecast, dtype=np.float32, copy=True)
    for index in np.unique(r.visit):
        visit = visits[int(index)]
        rows = np.where(r.visit == index)[0]
        rows = rows[np.argsort(r.t_ms[rows], kind="stable")]
        state: list[Any] = []
        times, values = visit.times_ms, visit.mg_dl
        for row in rows:
            t = int(r.t_ms[row])
            end = int(np.searchsorted(times, t, side="right"))
            start = int(np.searchsorted(times, t - SETTLE_MS))
            readings = functools.partial(_pairs, times[start:end], values[start:end])
            raw = {
                str(h): round(float(v), 1) for h, v in zip(HORIZONS_MIN, forecast[row], strict=True)
            }
            out, _, state = personal_forecast(state, readings, t, raw, model="evaluated")
            adapted[row] = list(out.values())
    return adapted


def _pairs(times: np.ndarray, values: np.ndarray) -> list[tuple[int, float]]:
    return list(zip(times.tolist(), values.tolist(), strict=True))


def by_day(
    visits: Sequence[Visit], r: Replay, methods: dict[str, np.ndarray], k: int = 1
) -> list[dict[str, Any]]:
    """RMSE at one horizon (index ``k``) by day of data seen in the visit: 0-1, 1-2, 2-3, 3+."""
    first = np.array([visits[int(v)].times_ms[0] for v in r.visit])
    day = np.minimum((r.t_ms - first) // 86_400_000, 3)
    truth = r.future[:, k]
    out = []
    for d in range(4):
        mine = (day == d) & ~np.isnan(truth)
        if not mine.any():
            continue
        row: dict[str, Any] = {"days_seen": f"{d}-{d + 1}" if d < 3 else "3+", "n": int(mine.sum())}
        for name, values in methods.items():
            row[name] = round(float(np.sqrt(np.mean((values[mine, k] - truth[mine]) ** 2))), 2)
        out.append(row)
    return out
