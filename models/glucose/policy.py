"""The ``predicted_low`` alarm policy, chosen on validation patients among the rules a clinic
could run instead.

Candidates, each scored on the same hypoglycaemia events (``events``: warned 0-30 min ahead,
false alarms per monitored day, median lead):

- the model's probability P(< 70 within 30 min) at each threshold, alone or only while the
  CGM falls (``probability`` / ``probability_falling``): what serving can run;
- Nightscout's AR2 rule: what serving runs when the model does not drive the alarm;
- plain CGM thresholds (75, 80, 85, 90 mg/dL) and the any-of combinations of the model or
  AR2 with a threshold: what a nurse could set on any CGM system. Serving runs the model's
  combinations too (``Gate.predicted_low_cgm_below``); the others are reported beside it.

The served policy is the servable candidate that warned of the most events within the false-
alarm budget (0.3/day) on the validation patients, both sensor rates pooled; ties go to fewer
false alarms, then the longer median lead. A candidate serving cannot run that did better is
named in the gate (``better_unserved``), and so in the card: it is not hidden. Test patients
choose nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
) -> list[tuple[Candidate, dict[str, Any]]]:
    """Every candidate's figures over ``parts`` (visits, replay, P(< 70)) pooled."""
    rows = []
    for candidate in candidates():
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

    def rank(row: tuple[Candidate, dict[str, Any]]) -> tuple[float, float, float]:
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
        "candidates": [{"policy": c.name, "servable": c.servable, **f} for c, f in rows],
    }
