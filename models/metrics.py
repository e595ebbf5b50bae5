"""Discrimination and calibration metrics (numpy only), with patient-level bootstrap, and
the event-based alarm score the glucose evaluations share (grid and minute based)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y, bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auprc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise)."""
    y = np.asarray(y, bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score), kind="mergesort")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, ...]:
    """(mean predicted, observed rate, count) per equal-width probability bin."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins) / np.maximum(counts, 1)
    observed = np.bincount(index, weights=y.astype(float), minlength=bins) / np.maximum(counts, 1)
    return predicted, observed, counts


def isotonic(p: np.ndarray, y: np.ndarray, decimals: int = 3) -> tuple[list[float], list[float]]:
    """Isotonic regression of the outcome ``y`` (0/1) on the probability ``p`` by
    pool-adjacent-violators over ``p`` rounded to ``decimals`` (equal values pooled first).
    Returns the knots of the fitted map: each block's mean ``p`` (increasing) and its observed
    rate (increasing: blocks with equal rates are pooled too), for linear interpolation."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    keys, inverse = np.unique(np.round(p, decimals), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(keys)).astype(float)
    sum_p = np.bincount(inverse, weights=p, minlength=len(keys))
    sum_y = np.bincount(inverse, weights=y, minlength=len(keys))
    blocks: list[list[float]] = []  # [count, sum of p, sum of y]
    for block in zip(counts, sum_p, sum_y, strict=True):
        blocks.append(list(block))
        # pool while the previous block's rate is not below this one's
        while len(blocks) > 1 and blocks[-2][2] * blocks[-1][0] >= blocks[-1][2] * blocks[-2][0]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    return [b[1] / b[0] for b in blocks], [b[2] / b[0] for b in blocks]


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: count-weighted |predicted - observed| over the bins."""
    predicted, observed, counts = reliability(y, p, bins)
    return float(np.sum(counts * np.abs(predicted - observed)) / max(counts.sum(), 1))


def bootstrap_ci(
    metric: Callable[[np.ndarray], float], groups: np.ndarray, rounds: int = 500, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of ``metric(sample indices)`` resampling whole patients."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in unique}
    values = []
    for _ in range(rounds):
        chosen = rng.choice(unique, len(unique), replace=True)
        value = metric(np.concatenate([members[g] for g in chosen]))
        if value == value:
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


@dataclass
class AlarmScore:
    """Alarm episodes (all, true), events (all, warned ahead) and monitored days."""

    alarms: int = 0
    true_alarms: int = 0
    events: int = 0
    detected: int = 0  # events warned of 0-30 min ahead
    days: float = 0.0
    leads_min: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else float("nan")

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else float("nan")

    @property
    def false_per_day(self) -> float:
        return (self.alarms - self.true_alarms) / self.days

    @property
    def median_lead(self) -> float:
        return float(np.median(self.leads_min)) if self.leads_min else float("nan")

    def __add__(self, other: AlarmScore) -> AlarmScore:
        return AlarmScore(
            self.alarms + other.alarms,
            self.true_alarms + other.true_alarms,
            self.events + other.events,
            self.detected + other.detected,
            self.days + other.days,
            self.leads_min + other.leads_min,
        )

    def summary(self) -> dict[str, float | int | None]:
        """The figures with stable keys (``None`` where one cannot be computed)."""

        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "alarms": self.alarms,
            "events": self.events,
            "warned": self.detected,
            "precision": ratio(self.true_alarms, self.alarms),
            "recall": ratio(self.detected, self.events),
            "false_alarms_per_day": ratio(self.alarms - self.true_alarms, self.days),
            "median_lead_min": float(np.median(self.leads_min)) if self.leads_min else None,
        }
