"""Per-patient adaptation of the glucose forecast, learned online from the patient's own CGM.

Served forecasts are remembered (at most one per ``EVERY_MS`` and ``PENDING`` of them: an
hour and five minutes at any sensor rate); when the patient's later readings arrive, the
error at each learned horizon updates a running bias (the mean of the first ``MEAN_UNTIL``
errors, then an exponential average, ``ALPHA``). The adapted forecast is the population
model's plus that bias, shrunk towards zero while few errors are known (weight
``n / (n + SHRINK)``) and clipped to ``LIMIT`` mg/dL: bounded, so one patient's odd sensor
can move its forecast by at most 30 mg/dL. Each horizon learns from its own errors only.

The state lives in the patient's state (``PatientState.personal``), compact integers: the
model it learned for (another model version starts afresh), the horizons, biases in
hundredths, counts and the pending forecasts as (made at, epoch seconds; tenths of mg/dL;
settled bits). Serving learns only the horizons the gate serves it at (``Gate.personal``):
for one horizon about 110 bytes packed; nothing at all while adaptation is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HORIZONS = (15, 30, 45, 60)
PENDING = 13
EVERY_MS = 270_000  # remember at most one forecast per 4.5 min (a 1-min sensor: every 5th)
MEAN_UNTIL = 50
ALPHA = 0.02
SHRINK = 20.0
LIMIT = 30.0
TOLERANCE_MS = 150_000  # a reading within 2.5 min of a forecast's target time settles it
SETTLE_MS = 70 * 60_000  # the recent readings each step learns from (the longest horizon + 10)


@dataclass
class PersonalBias:
    horizons: tuple[int, ...] = HORIZONS  # minutes learned, in the forecast's order
    model: str = ""  # the model whose errors these are
    bias: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    # forecasts waiting for their truth: [made at ms, one value per horizon, settled bits]
    pending: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bias = self.bias or [0.0] * len(self.horizons)
        self.n = self.n or [0] * len(self.horizons)

    def settle(self, readings: list[tuple[int, float]]) -> None:
        """Learn from the readings (oldest first) that fall on pending forecasts' targets."""
        if not self.pending or not readings:
            return
        latest = readings[-1][0]
        done = (1 << len(self.horizons)) - 1
        kept = []
        for entry in self.pending:
            made, *values, settled = entry
            bits = int(settled)
            for k, horizon in enumerate(self.horizons):
                if bits & (1 << k):
                    continue
                truth = _at(readings, int(made) + horizon * 60_000)
                if truth is not None:
                    self._learn(k, truth - values[k])
                    bits |= 1 << k
            if bits != done and latest < made + (max(self.horizons) + 5) * 60_000:
                kept.append([made, *values, bits])
        self.pending = kept

    def _learn(self, k: int, error: float) -> None:
        self.n[k] += 1
        rate = 1 / self.n[k] if self.n[k] <= MEAN_UNTIL else ALPHA
        self.bias[k] += rate * (error - self.bias[k])

    def remember(self, made_ms: int, forecast: list[float]) -> None:
        """Keep a forecast (one value per learned horizon) until its truth arrives."""
        if self.pending and self.pending[-1][0] > made_ms - EVERY_MS:
            return
        self.pending.append([made_ms, *forecast, 0])
        del self.pending[:-PENDING]

    def correction(self) -> list[float]:
        """mg/dL to add to the population forecast, per learned horizon."""
        return [
            max(-LIMIT, min(LIMIT, b * n / (n + SHRINK)))
            for b, n in zip(self.bias, self.n, strict=True)
        ]

    def adapt(self, forecast: list[float]) -> list[float]:
        return [
            round(min(400.0, max(39.0, f + c)), 1)
            for f, c in zip(forecast, self.correction(), strict=True)
        ]

    def to_list(self) -> list[Any]:
        """The stored form: small integers (see the module docstring)."""
        return [
            self.model,
            list(self.horizons),
            [round(b * 100) for b in self.bias],
            self.n,
            [
                [int(e[0]) // 1000, *(round(v * 10) for v in e[1:-1]), int(e[-1])]
                for e in self.pending
            ],
        ]

    @classmethod
    def from_list(
        cls, data: list[Any] | None, model: str = "", horizons: tuple[int, ...] = HORIZONS
    ) -> PersonalBias:
        """The stored state, or a fresh one where it was learned for another model or other
        horizons, nothing is stored or what is stored is not a state of this shape (the
        adaptation then starts again; the forecast is never held up by it)."""
        try:
            if not data or data[0] != model or tuple(data[1]) != horizons:
                return cls(horizons, model)
            _, _, bias, n, pending = data
            width = len(horizons)
            state = cls(
                horizons,
                model,
                [float(b) / 100 for b in bias],
                [int(k) for k in n],
                [
                    [int(e[0]) * 1000, *(float(v) / 10 for v in e[1:-1]), int(e[-1])]
                    for e in pending
                ],
            )
            if len(state.bias) != width or len(state.n) != width:
                return cls(horizons, model)
            if any(len(e) != width + 2 for e in state.pending):
                return cls(horizons, model)
            return state
        except (TypeError, ValueError, IndexError, KeyError):
            return cls(horizons, model)


def _at(readings: list[tuple[int, float]], target: int) -> float | None:
    """The reading closest to ``target`` within the tolerance (readings oldest first)."""
    best = None
    for t, value in reversed(readings):
        if t < target - TOLERANCE_MS:
            break
        if abs(t - target) <= TOLERANCE_MS and (best is None or abs(t - target) < best[0]):
            best = (abs(t - target), value)
    return None if best is None else best[1]


def personal_summary(state: list[Any]) -> dict[str, Any] | None:
    """The stored state in words: for which model, per horizon the correction and the
    errors learned from, and the forecasts awaiting their truth (None: nothing stored)."""
    try:
        model, horizons = state[0], tuple(int(h) for h in state[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None  # nothing stored, or not a state (the next forecast starts it afresh)
    personal = PersonalBias.from_list(state, model, horizons)
    names = [str(h) for h in personal.horizons]
    return {
        "model": personal.model,
        "correction_mg_dl": dict(zip(names, map(round1, personal.correction()), strict=True)),
        "errors_learned": dict(zip(names, personal.n, strict=True)),
        "pending_forecasts": len(personal.pending),
    }


def round1(value: float) -> float:
    return round(value, 1)


def personal_forecast(
    state: list[Any],
    readings: Callable[[], list[tuple[int, float]]],
    made_ms: int,
    forecast: dict[str, float],
    *,
    model: str,
) -> tuple[dict[str, float], dict[str, float], list[Any]]:
    """One serving step for the horizons in ``forecast`` (minutes -> mg/dL): learn from
    ``readings()`` (the window's recent CGM, oldest first; asked for only while forecasts
    await their truth), adapt the forecast made at
    ``made_ms`` (the latest reading's time) by ``model`` and remember it. Returns the
    adapted forecast, the correction added and the new stored state."""
    horizons = tuple(int(h) for h in forecast)
    personal = PersonalBias.from_list(state, model, horizons)
    if personal.pending:
        personal.settle(readings())
    raw = list(forecast.values())
    correction = [round(c, 1) for c in personal.correction()]
    adapted = personal.adapt(raw)
    personal.remember(made_ms, raw)
    return (
        dict(zip(forecast, adapted, strict=True)),
        dict(zip(forecast, correction, strict=True)),
        personal.to_list(),
    )
