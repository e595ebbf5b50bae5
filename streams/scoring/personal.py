"""Per-patient adaptation of the glucose forecast, learned online from the patient's own CGM.

Each served model forecast is remembered (at most ``PENDING``, about an hour of a 5-min
sensor); when the patient's later readings arrive, the error at each horizon updates a
running bias (the mean of the first ``MEAN_UNTIL`` errors, then an exponential average,
``ALPHA``). The adapted forecast is the population model's plus that bias, shrunk towards
zero while few errors are known (weight ``n / (n + SHRINK)``) and clipped to ``LIMIT`` mg/dL:
bounded, so one patient's odd sensor can move its forecast by at most 30 mg/dL. The state
lives in the patient's window (``PatientWindow.personal``: 4 biases, 4 counts and up to 13
pending forecasts, at most about 0.5 KB packed; nothing at all while adaptation is off).

Whether it serves is the model's gate (``Gate.personal``): on when it lowered the 30- and
60-min error on the validation patients (``models/glucose/real_report.py``). On the shipped
model's validation patients it did not, so the shipped gate leaves it off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HORIZONS = (15, 30, 45, 60)
PENDING = 13
MEAN_UNTIL = 50
ALPHA = 0.02
SHRINK = 20.0
LIMIT = 30.0
TOLERANCE_MS = 150_000  # a reading within 2.5 min of a forecast's target time settles it
SETTLE_MS = 70 * 60_000  # the recent readings each step learns from (the longest horizon + 10)


@dataclass
class PersonalBias:
    bias: list[float] = field(default_factory=lambda: [0.0] * len(HORIZONS))
    n: list[int] = field(default_factory=lambda: [0] * len(HORIZONS))
    # forecasts waiting for their truth: [made at ms, f15, f30, f45, f60, settled bits]
    pending: list[list[float]] = field(default_factory=list)

    def settle(self, readings: list[tuple[int, float]]) -> None:
        """Learn from the readings (oldest first) that fall on pending forecasts' targets."""
        if not self.pending or not readings:
            return
        latest = readings[-1][0]
        kept = []
        for entry in self.pending:
            made, *values, settled = entry
            bits = int(settled)
            for k, horizon in enumerate(HORIZONS):
                if bits & (1 << k):
                    continue
                target = int(made) + horizon * 60_000
                truth = _at(readings, target)
                if truth is not None:
                    self._learn(k, truth - values[k])
                    bits |= 1 << k
            if bits != (1 << len(HORIZONS)) - 1 and latest < made + (HORIZONS[-1] + 5) * 60_000:
                kept.append([made, *values, bits])
        self.pending = kept

    def _learn(self, k: int, error: float) -> None:
        self.n[k] += 1
        rate = 1 / self.n[k] if self.n[k] <= MEAN_UNTIL else ALPHA
        self.bias[k] += rate * (error - self.bias[k])

    def remember(self, made_ms: int, forecast: list[float]) -> None:
        if self.pending and self.pending[-1][0] >= made_ms:
            return  # one forecast per reading time
        self.pending.append([made_ms, *forecast, 0])
        del self.pending[:-PENDING]

    def correction(self) -> list[float]:
        """mg/dL to add to the population forecast, per horizon."""
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
        """Stored form: 4 biases, 4 counts and at most 13 pending forecasts (~0.5 KB packed)."""
        return [
            [round(b, 2) for b in self.bias],
            self.n,
            [[int(e[0]), *(round(v, 1) for v in e[1:-1]), int(e[-1])] for e in self.pending],
        ]

    @classmethod
    def from_list(cls, data: list[Any] | None) -> PersonalBias:
        if not data:
            return cls()
        bias, n, pending = data
        return cls(list(bias), list(n), [list(e) for e in pending])


def _at(readings: list[tuple[int, float]], target: int) -> float | None:
    """The reading closest to ``target`` within the tolerance (readings oldest first)."""
    best = None
    for t, value in reversed(readings):
        if t < target - TOLERANCE_MS:
            break
        if abs(t - target) <= TOLERANCE_MS and (best is None or abs(t - target) < best[0]):
            best = (abs(t - target), value)
    return None if best is None else best[1]


def personal_forecast(
    state: list[Any], readings: list[tuple[int, float]], made_ms: int, forecast: list[float]
) -> tuple[list[float], list[float], list[Any]]:
    """One serving step: learn from ``readings`` (the window's recent CGM, oldest first),
    adapt ``forecast`` (made at ``made_ms``, the latest reading's time) and remember it.
    Returns the adapted forecast, the correction added and the new stored state."""
    personal = PersonalBias.from_list(state)
    personal.settle(readings)
    correction = [round(c, 1) for c in personal.correction()]
    adapted = personal.adapt(forecast)
    personal.remember(made_ms, forecast)
    return adapted, correction, personal.to_list()
