"""Evaluation metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models import metrics as m
from models.glucose import metrics as g


def test_auroc_and_auprc_on_known_orderings() -> None:
    y = np.array([0, 0, 1, 1], bool)
    assert m.auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert m.auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert m.auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert m.auroc(y, np.array([0.1, 0.6, 0.5, 0.9])) == 0.75
    assert m.auprc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    # ranking 1, 0, 1, 0: precision at the hits 1 and 2/3
    assert m.auprc(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(
        (1 + 2 / 3) / 2
    )


def test_calibration_error_is_zero_when_rates_match_predictions() -> None:
    y = np.array([1] * 3 + [0] * 7 + [1] * 7 + [0] * 3, bool)
    p = np.array([0.3] * 10 + [0.7] * 10)
    assert m.ece(y, p) == pytest.approx(0.0)
    assert m.ece(~y, p) == pytest.approx(0.4)


def test_isotonic_pools_violators_and_keeps_monotone_rates() -> None:
    # rates by probability: 0.1 -> 0/2, 0.2 -> 2/2, 0.3 -> 0/2 (a violator), 0.9 -> 2/2
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.9, 0.9])
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    raw, rate = m.isotonic(p, y)
    assert raw == pytest.approx([0.1, 0.25, 0.9])  # 0.2 and 0.3 pooled: their mean p
    assert rate == pytest.approx([0.0, 0.5, 1.0])


def test_isotonic_calibrates_an_overconfident_score() -> None:
    """A score twice the true rate: the fitted map halves it (within sampling error) and
    the calibrated probabilities' reliability bins match the observed rates."""
    rng = np.random.default_rng(7)
    truth = rng.uniform(0, 0.45, 200_000)
    y = rng.uniform(size=truth.size) < truth
    p = 2 * truth
    raw, rate = m.isotonic(p, y)
    assert all(b > a for a, b in zip(raw, raw[1:], strict=False))
    assert all(b > a for a, b in zip(rate, rate[1:], strict=False))
    calibrated = np.interp(p, raw, rate)
    predicted, observed, counts = m.reliability(y, calibrated)
    judged = counts >= 1000
    assert judged.sum() >= 4
    assert np.abs(predicted - observed)[judged].max() < 0.02
    assert np.abs(m.reliability(y, p)[0] - m.reliability(y, p)[1])[counts > 1000].max() > 0.1


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    score = y + rng.normal(0, 0.8, 400)
    groups = np.repeat(np.arange(40), 10)
    low, high = m.bootstrap_ci(lambda i: m.auroc(y[i], score[i]), groups, rounds=200)
    assert low < m.auroc(y, score) < high


@pytest.mark.parametrize(
    ("reference", "predicted", "zone"),
    [
        (100, 110, "A"),
        (60, 65, "A"),
        (200, 50, "E"),
        (50, 200, "E"),
        (300, 120, "D"),
        (100, 250, "C"),
        (170, 30, "C"),
        (100, 140, "B"),
    ],
)
def test_clarke_error_grid_zones(reference: float, predicted: float, zone: str) -> None:
    zones = g.clarke_zones(np.array([reference]), np.array([predicted]))
    assert zones[zone] == 1.0


def test_hypo_events_need_15_minutes_below_70() -> None:
    bg = np.full(100, 120.0)
    bg[10:12] = 60  # 10 min: not an event
    bg[30:34] = 65  # 20 min: an event at step 30
    bg[40:44] = 65  # 30 min after the last one ended? 6 steps later: merged
    bg[80:90] = 50
    assert g.hypo_events(bg) == [30, 80]


def test_alarm_scoring_counts_detections_leads_and_false_alarms() -> None:
    bg = np.full(300, 120.0)
    bg[100:110] = 60
    alarms = np.array([95, 96, 97, 200])  # one warning 25 min ahead, one false alarm
    score = g.score_alarms(alarms, bg, 0, 300)
    assert (score.events, score.detected, score.alarms, score.true_alarms) == (1, 1, 2, 1)
    assert score.leads_min == [25.0]
    assert score.false_per_day == pytest.approx(1 / (300 * 5 / 1440))
