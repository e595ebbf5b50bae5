"""The predicted_low policy is chosen on validation figures, within the false-alarm budget,
among what serving can run; a rule it cannot run that did better is named, not hidden."""

from __future__ import annotations

from typing import Any

import pytest

from models.glucose import policy
from models.glucose.policy import Candidate


def row(recall: float, false_per_day: float, lead: float = 15.0) -> dict[str, Any]:
    return {"warned": int(recall * 100), "events": 100, "recall": recall,
            "false_per_day": false_per_day, "median_lead_min": lead}  # fmt: skip


def chosen(rows: list[tuple[Candidate, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(policy, "table", lambda parts: rows)
    return policy.choose([])


def test_the_most_events_within_the_budget_then_fewer_false_alarms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loose = Candidate("model", "probability", 0.3)
    tight = Candidate("model", "probability_falling", 0.5)
    tighter = Candidate("model", "probability_falling", 0.6)
    result = chosen(
        [
            (loose, row(0.9, 0.5)),
            (tight, row(0.7, 0.29)),
            (tighter, row(0.7, 0.2)),
            (Candidate("ar2"), row(0.4, 0.25)),
        ],  # fmt: skip
        monkeypatch,
    )
    assert result["served"] == tighter  # 0.9 is over budget; 0.7 at fewer false alarms
    assert result["best_model"] == tighter and not result["better_unserved"]


def test_a_threshold_that_did_better_is_named_and_ar2_serves_when_the_model_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threshold = Candidate("none", cgm_below=75.0)
    result = chosen(
        [
            (Candidate("model", "probability", 0.5), row(0.3, 0.4)),
            (Candidate("ar2"), row(0.4, 0.25)),
            (threshold, row(0.6, 0.28)),
        ],  # fmt: skip
        monkeypatch,
    )
    assert result["served"] == Candidate("ar2")
    assert [b["policy"] for b in result["better_unserved"]] == ["CGM<75"]
    assert not threshold.servable and Candidate("ar2").servable


def test_every_candidate_family_is_offered() -> None:
    names = [c.name for c in policy.candidates()]
    assert "AR2" in names and "CGM<80" in names and "AR2 or CGM<75" in names
    assert "model p>=0.45, falling" in names and "model p>=0.40 or CGM<80" in names
