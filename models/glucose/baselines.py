"""Forecasting baselines: last value, linear extrapolation, Nightscout AR2, per-patient AR."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from streams.rules import glucose as rules

from .sim import STEP_MIN


def carried_forward(cgm: np.ndarray) -> np.ndarray:
    index = np.where(~np.isnan(cgm), np.arange(len(cgm)), 0)
    filled = cgm[np.maximum.accumulate(index)]
    first = int(np.argmax(~np.isnan(cgm)))
    filled[:first] = cgm[first]
    return filled


def last_value(cgm_now: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
    return np.repeat(cgm_now[:, None], len(horizons), axis=1)


def linear(cgm: np.ndarray, steps: np.ndarray, horizons_min: tuple[int, ...]) -> np.ndarray:
    """Least-squares slope over the readings of the last 15 min, extrapolated."""
    out = np.empty((len(steps), len(horizons_min)))
    for row, i in enumerate(steps):
        window = cgm[max(0, i - 3) : i + 1]
        t = np.arange(len(window))[~np.isnan(window)] * STEP_MIN
        v = window[~np.isnan(window)]
        slope = np.polyfit(t, v, 1)[0] if len(v) >= 2 else 0.0
        out[row] = v[-1] + slope * np.array(horizons_min)
    return np.clip(out, 40, 400)


def ar2(cgm: np.ndarray, steps: np.ndarray, horizons_min: tuple[int, ...]) -> np.ndarray:
    """Nightscout's AR2 (the serving rule's own code); last value when it cannot run."""
    out = np.empty((len(steps), len(horizons_min)))
    base = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for row, i in enumerate(steps):
        readings = [
            rules.Reading(datetime.fromtimestamp(base + j * STEP_MIN * 60, tz=UTC), float(cgm[j]))
            for j in (i - 1, i)
            if j >= 0 and not np.isnan(cgm[j])
        ]
        forecast = rules.ar2_forecast(readings, steps=max(horizons_min) // STEP_MIN)
        if not forecast:
            out[row] = cgm[i]
            continue
        out[row] = [forecast[h // STEP_MIN - 1].mg_dl for h in horizons_min]
    return out


class PatientAR:
    """An AR(p) model of one patient's glucose, fitted on that patient's first days only."""

    def __init__(self, order: int = 6) -> None:
        self.order = order
        self.coef = np.zeros(order + 1)

    def fit(self, cgm: np.ndarray) -> PatientAR:
        y = carried_forward(cgm)
        rows = [y[i - self.order : i][::-1] for i in range(self.order, len(y))]
        design = np.column_stack([np.ones(len(rows)), np.array(rows)])
        self.coef, *_ = np.linalg.lstsq(design, y[self.order :], rcond=None)
        return self

    def forecast(
        self, cgm: np.ndarray, steps: np.ndarray, horizons_min: tuple[int, ...]
    ) -> np.ndarray:
        y = carried_forward(cgm)
        out = np.empty((len(steps), len(horizons_min)))
        wanted = [h // STEP_MIN for h in horizons_min]
        for row, i in enumerate(steps):
            history = list(y[max(0, i - self.order + 1) : i + 1][::-1])
            history += [history[-1]] * (self.order - len(history))
            predictions = []
            for _ in range(max(wanted)):
                value = self.coef[0] + float(np.dot(self.coef[1:], history[: self.order]))
                predictions.append(value)
                history.insert(0, value)
            out[row] = [predictions[k - 1] for k in wanted]
        return np.clip(out, 40, 400)
