"""The ``predicted_low`` alarm policy, chosen on validation patients among the rules a clinic
could run instead.

Candidates, each scored on the same hypoglycaemia events (``events``: warned 0-30 min ahead,
false alarms per monitored day, median lead):

- the model's probability P(< 70 within 30 min) at each threshold, alone or only while the
  CGM falls (``probability`` / ``probability_falling``): what serving can run;
- Nightscout's AR2 rule: what serving runs when the model does not drive the alarm;
- plain CGM thresholds (75, 80, 85, 90 mg/dL) and the any-of combinations of the model or
  AR2 with a threshold: what a nurse could set on any CGM system. Serving runs the model's
  combinations too (``Gate.predicted_low_cgm_below``); the others are reported beside it;
- rules serving does not run, reported so that a better one would be seen (``Rule``):
  rate-of-change rules (CGM below a level while falling at least so fast), the 15-min linear
  projection below 70 within 15 or 30 min, two-of votes of the model, AR2 and a CGM
  threshold, the model's warning confirmed at two consecutive readings (a hold-off against
  single-reading blips), and the served any-of policy with a rate-of-change rule added.

The served policy is the servable candidate that warned of the most events within the false-
alarm budget (0.3/day) on the validation patients, both sensor rates pooled; ties go to fewer
false alarms, then the longer median lead. A candidate serving cannot run that did better is
named in the gate (``better_unserved``), and so in the card: it is not hidden. Test patients
choose nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.scoring.features import glucose_trend
from streams.scoring.manifest import PredictedLowRule

from ..metrics import AlarmScore
from . import real_eval
from .real import Replay, Visit

BUDGET_PER_DAY = 0.3
RULES: tuple[PredictedLowRule, ...] = ("probability", "probability_falling")
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))
CGM_BELOW = (75.0, 80.0, 85.0, 90.0)
COMBINED_BELOW = (75.0, 80.0)


@dataclass(frozen=True)
class Candidate:
    """One warning rule: ``source`` model (``rule``, ``threshold``), ar2 or none, any-of a
    CGM threshold ``cgm_below`` (mg/dL) when set. Serving runs model and ar2 alone."""

    source: str
    rule: PredictedLowRule | None = None
    threshold: float | None = None
    cgm_below: float | None = None

    @property
    def name(self) -> str:
        parts = []
        if self.source == "model":
            falling = ", falling" if self.rule == "probability_falling" else ""
            parts.append(f"model p>={self.threshold:.2f}{falling}")
        elif self.source == "ar2":
            parts.append("AR2")
        if self.cgm_below is not None:
            parts.append(f"CGM<{self.cgm_below:.0f}")
        return " or ".join(parts)

    @property
    def servable(self) -> bool:
        """Serving runs the model's rules (alone or any-of a CGM level) and AR2 alone."""
        return self.source == "model" or (self.source == "ar2" and self.cgm_below is None)

    def fires(self, r: Replay, p_low: np.ndarray) -> np.ndarray:
        fired = np.zeros(len(r.now), dtype=bool)
        if self.source == "model":
            assert self.rule is not None and self.threshold is not None
            fired |= np.asarray(real_eval.model_alarm(r, p_low, self.threshold, self.rule))
        elif self.source == "ar2":
            fired |= r.ar2_low
        if self.cgm_below is not None:  # as serving and a CGM system's own alert run it
            fired |= r.now < self.cgm_below
        return fired

    @property
    def family(self) -> str:
        """What the candidate varies within: its threshold is the only difference."""
        if self.source == "none":
            return self.name  # a plain CGM threshold: a family of one
        head = "model" if self.source == "model" else self.name.split(" or ")[0]
        if self.source == "model" and self.rule == "probability_falling":
            head += ", falling"
        return head + (f" or CGM<{self.cgm_below:.0f}" if self.cgm_below is not None else "")


@dataclass(frozen=True)
class Rule:
    """A warning rule serving does not run, scored beside the candidates it could."""

    name: str
    family: str
    fires_when: Callable[[Replay, np.ndarray], np.ndarray]
    source: str = "other"
    servable: bool = False

    def fires(self, r: Replay, p_low: np.ndarray) -> np.ndarray:
        return np.asarray(self.fires_when(r, p_low), dtype=bool)


def confirmed(r: Replay, fired: np.ndarray) -> np.ndarray:
    """``fired`` at a reading and at the one before it (the same visit, <= 20 min apart)."""
    before = np.zeros_like(fired)
    same = (r.visit[1:] == r.visit[:-1]) & (np.diff(r.t_ms) <= 20 * 60_000)
    before[1:] = fired[:-1] & same
    return fired & before


def falling_from(r: Replay, below: float, rate: float) -> np.ndarray:
    """The CGM below ``below`` mg/dL while falling at ``rate`` mg/dL/min or faster."""
    falling: np.ndarray = (r.now < below) & (glucose_trend(r.x) <= rate)
    return falling


RATE_RULES = ((85.0, -0.5), (90.0, -0.5), (90.0, -1.0), (100.0, -1.0), (100.0, -1.5))
TWO_OF_BELOW = (80.0, 85.0, 90.0)


def rules() -> list[Rule]:
    """The rules serving does not run (see the module docstring), on fixed grids."""
    found = [
        Rule(
            f"linear projection <70 in {h} min",
            "linear projection",
            lambda r, p, k=k: r.linear[:, k] < 70,
        )
        for k, h in ((0, 15), (1, 30))
    ]
    found += [
        Rule(
            f"CGM<{below:.0f} falling <={rate} mg/dL/min",
            "CGM level and rate",
            lambda r, p, b=below, q=rate: falling_from(r, b, q),
        )
        for below, rate in RATE_RULES
    ]
    for t in THRESHOLDS:
        found += [
            Rule(
                f"two of: model p>={t:.2f}, AR2, CGM<{below:.0f}",
                f"two of: model, AR2, CGM<{below:.0f}",
                lambda r, p, t=t, b=below: (p >= t).astype(int) + r.ar2_low + (r.now < b) >= 2,
            )
            for below in TWO_OF_BELOW
        ]
        found.append(
            Rule(
                f"model p>={t:.2f} at 2 readings or CGM<75",
                "model at 2 readings or CGM<75",
                lambda r, p, t=t: confirmed(r, p >= t) | (r.now < 75),
            )
        )
        found.append(
            Rule(
                f"model p>={t:.2f} or CGM<75 or CGM<100 falling <=-1.5",
                "model or CGM<75 or CGM<100 falling <=-1.5",
                lambda r, p, t=t: (
                    (p >= t) | (r.now < 75) | ((r.now < 100) & (glucose_trend(r.x) <= -1.5))
                ),
            )
        )
    return found


def candidates() -> list[Candidate]:
    found = [Candidate("model", rule, t) for rule, t in itertools.product(RULES, THRESHOLDS)]
    found.append(Candidate("ar2"))
    found += [Candidate("none", cgm_below=below) for below in CGM_BELOW]
    found += [
        Candidate("model", rule, t, below)
        for rule, t, below in itertools.product(RULES, THRESHOLDS, COMBINED_BELOW)
    ]
    found += [Candidate("ar2", cgm_below=below) for below in COMBINED_BELOW]
    return found


def figures(total: AlarmScore) -> dict[str, Any]:
    def rounded(value: float) -> float | None:
        return None if np.isnan(value) else round(float(value), 4)

    return {
        "warned": total.detected,
        "events": total.events,
        "recall": rounded(total.recall),
        "false_per_day": rounded(total.false_per_day) if total.days else None,
        "median_lead_min": rounded(total.median_lead),
    }


def table(
    parts: Sequence[tuple[Sequence[Visit], Replay, np.ndarray]],
) -> list[tuple[Candidate | Rule, dict[str, Any]]]:
    """Every candidate's figures over ``parts`` (visits, replay, P(< 70)) pooled."""
    rows: list[tuple[Candidate | Rule, dict[str, Any]]] = []
    for candidate in [*candidates(), *rules()]:
        total = AlarmScore()
        for visits, r, p_low in parts:
            total = total + real_eval.alarm_score(visits, r, candidate.fires(r, p_low))
        rows.append((candidate, figures(total)))
    return rows


def choose(
    parts: Sequence[tuple[Sequence[Visit], Replay, np.ndarray]],
    budget: float = BUDGET_PER_DAY,
) -> dict[str, Any]:
    """The served policy and the validation table (see the module docstring)."""
    rows = table(parts)

    def rank(row: tuple[Candidate | Rule, dict[str, Any]]) -> tuple[float, float, float]:
        f = row[1]
        lead = f["median_lead_min"] if f["median_lead_min"] is not None else -1.0
        return (f["recall"] or 0.0, -(f["false_per_day"] or 0.0), lead)

    within = [row for row in rows if (row[1]["false_per_day"] or 0.0) <= budget]
    servable = [row for row in within if row[0].servable]
    best = max(servable, key=rank) if servable else (Candidate("ar2"), {})
    better = [row for row in within if not row[0].servable and rank(row) > rank(best)]
    models = [row for row in rows if row[0].source == "model" and row[0].servable]
    # the model's own best rule (its alarm threshold even where AR2 serves)
    best_model = max([r for r in models if r in within] or models, key=rank)[0]
    return {
        "served": best[0],
        "best_model": best_model,
        "served_figures": best[1],
        "budget_per_day": budget,
        "better_unserved": [{"policy": c.name, **f} for c, f in sorted(better, key=rank)[-3:]],
        "candidates": [
            {"policy": c.name, "family": c.family, "servable": c.servable, **f} for c, f in rows
        ],
    }
