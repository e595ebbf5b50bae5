"""The insulin and meal records the glucose ablation reads: doses parsed from free text,
long-acting insulin left out, and channels that never look past the sample's time."""

from __future__ import annotations

import numpy as np
import pytest

from models.glucose import treatments
from models.glucose.real import Replay
from streams.scoring.features import GLUCOSE


def test_prandial_units_leave_long_acting_insulin_out() -> None:
    assert treatments.prandial_units("Novolin R, 4 IU") == 4.0
    assert treatments.prandial_units("insulin aspart 70/30, 12 IU") == 12.0
    assert treatments.prandial_units("insulin degludec, 19 IU") == 0.0
    assert treatments.prandial_units("insulin\xa0glargine, 19 IU") == 0.0
    infusion = "500ml 0.9% sodium chloride,  12 IU Novolin R,  10 ml 10% potassium chloride"
    assert treatments.prandial_units(infusion) == 12.0
    assert treatments.prandial_units("") == 0.0
    assert treatments.pump_units(" 4.5") == 4.5
    assert treatments.pump_units("temporarily suspend insulin delivery") == 0.0


def test_channels_hold_what_came_before_each_sample_only() -> None:
    minute = 60_000
    n, steps = 2, GLUCOSE.steps
    r = Replay(
        x=np.zeros((n, steps, len(GLUCOSE.channels)), np.float32), future=np.zeros((n, 4)),
        hypo=np.zeros((n, 2), bool), hypo_known=np.ones(n, bool), ar2=np.zeros((n, 4)),
        linear=np.zeros((n, 4)), ar2_low=np.zeros(n, bool), now=np.full(n, 120.0),
        t_ms=np.array([600, 700]) * minute, visit=np.array([0, 1]), patient=np.zeros(n),
    )  # fmt: skip
    given = treatments.Treatments(
        np.array([590, 650]) * minute, np.array([8.0, 5.0]), np.array([600]) * minute
    )
    out = treatments.channels(r, [given, None])
    first = out[0]
    assert first[steps - 3, 0] == 0.8  # 8 IU, 10 min before: two bins back, / 10
    assert first[:, 0].sum() == 0.8  # the dose 50 min after the sample is not seen
    assert first[steps - 1, 1] == 1.0 and first[:, 1].sum() == 1.0  # the meal, at the time
    assert (first[:, 2] == 1.0).all()  # recorded
    assert not out[1].any()  # a visit without records: all zero, "recorded" 0 as well


def test_the_alarm_frontier_is_the_policy_choice_and_the_cheapest_at_ninety_percent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models.glucose import policy
    from models.glucose.policy import Candidate

    def row(recall: float, false_per_day: float) -> dict[str, object]:
        return {"warned": int(recall * 100), "events": 100, "recall": recall,
                "false_per_day": false_per_day, "median_lead_min": 15.0}  # fmt: skip

    rows = [
        (Candidate("model", "probability", 0.5, 75.0), row(0.84, 0.29)),
        (Candidate("model", "probability", 0.3, 75.0), row(0.91, 0.40)),
        (Candidate("model", "probability", 0.2), row(0.92, 0.70)),
        (Candidate("none", cgm_below=80.0), row(0.95, 0.35)),  # not servable: not the answer
    ]
    monkeypatch.setattr(policy, "table", lambda parts: rows)
    found = treatments.alarm_frontier([], None, None)  # type: ignore[arg-type]
    assert found["served"]["policy"] == "model p>=0.50 or CGM<75"
    assert found["served"]["recall"] == 0.84
    assert found["cheapest_90"]["policy"] == "model p>=0.30 or CGM<75"
    assert found["cheapest_90"]["false_per_day"] == 0.40
