"""The cohort generators: deterministic, physiological, with the artefacts real data has."""

from __future__ import annotations

import warnings

import numpy as np

from models.vitals.sim import PATTERNS, simulate


def test_glucose_simulation_is_deterministic_and_plausible() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # simglucose imports pkg_resources
        from models.glucose.sim import simulate_patient

        a = simulate_patient("child#001", 2, seed=3)
        b = simulate_patient("child#001", 2, seed=3)
    assert np.array_equal(a.bg, b.bg) and np.array_equal(a.cgm, b.cgm, equal_nan=True)
    assert len(a.bg) == 2 * 288
    assert 30 < a.bg.min() and a.bg.max() < 500
    present = ~np.isnan(a.cgm)
    assert 0.9 < present.mean() < 1.0  # dropouts
    assert ((a.cgm[present] >= 40) & (a.cgm[present] <= 400)).all()
    mard = np.mean(np.abs(a.cgm[present] - a.bg[present]) / a.bg[present])
    assert 0.03 < mard < 0.25  # a sensor, not the truth


def test_vitals_simulation_has_events_that_end_the_stay() -> None:
    patients = [simulate(i, 3, seed=11) for i in range(200)]
    deteriorating = [p for p in patients if p.pattern]
    assert 0.2 < len(deteriorating) / len(patients) < 0.5
    assert {p.pattern for p in deteriorating} <= set(PATTERNS)
    for p in deteriorating:
        assert p.onset_min is not None and p.event_min is not None
        assert p.onset_min < p.event_min == p.minutes
        assert all(minute < p.event_min for minute, _, _ in p.observations)
    assert simulate(5, 3, seed=11).observations == simulate(5, 3, seed=11).observations
