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


def test_rules_serving_does_not_run_are_scored_beside_and_never_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_of = next(r for r in policy.rules() if r.name.startswith("two of: model p>=0.30"))
    assert not two_of.servable and two_of.family == "two of: model, AR2, CGM<80"
    result = chosen(
        [(Candidate("model", "probability", 0.5), row(0.6, 0.25)), (two_of, row(0.8, 0.2))],
        monkeypatch,
    )
    assert result["served"] == Candidate("model", "probability", 0.5)
    assert [b["policy"] for b in result["better_unserved"]] == [two_of.name]
    families = {c["family"] for c in result["candidates"]}
    assert families == {"model", "two of: model, AR2, CGM<80"}


def test_the_rules_fire_as_named() -> None:
    import numpy as np

    from models.glucose.real import Replay
    from streams.scoring.features import GLUCOSE

    n = 4
    x = np.zeros((n, GLUCOSE.steps, len(GLUCOSE.channels)), np.float32)
    rate = GLUCOSE.channels.index("rate_per_min")
    x[:, -1, rate] = np.array([-1.0, -1.0, 0.0, -0.2])  # 15-min rate: -2, -2, 0, -0.4 mg/dL/min
    r = Replay(
        x=x, future=np.zeros((n, 4)), hypo=np.zeros((n, 2), bool), hypo_known=np.ones(n, bool),
        ar2=np.zeros((n, 4)), linear=np.array([[60.0] * 4, [90] * 4, [65] * 4, [100] * 4]),
        ar2_low=np.array([True, False, False, False]), now=np.array([95.0, 95.0, 72.0, 84.0]),
        t_ms=np.array([0, 5, 10, 60]) * 60_000, visit=np.zeros(n, int), patient=np.zeros(n),
    )  # fmt: skip
    p = np.array([0.35, 0.35, 0.1, 0.6])
    by_name = {rule.name: rule for rule in policy.rules()}
    fired = {
        name: by_name[name].fires(r, p).tolist()
        for name in (
            "linear projection <70 in 15 min",
            "CGM<100 falling <=-1.5 mg/dL/min",
            "two of: model p>=0.30, AR2, CGM<85",
            "model p>=0.30 at 2 readings or CGM<75",
        )
    }
    assert fired == {
        "linear projection <70 in 15 min": [True, False, True, False],
        "CGM<100 falling <=-1.5 mg/dL/min": [True, True, False, False],
        "two of: model p>=0.30, AR2, CGM<85": [True, False, False, True],
        # the second reading confirms the first; the fourth is 50 min after the third
        "model p>=0.30 at 2 readings or CGM<75": [False, True, True, False],
    }
