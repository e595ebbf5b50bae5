"""The feature contract: shapes, gaps, carried values, rates, and its hash."""

from __future__ import annotations

import math

import numpy as np

from streams.schemas.observation import Kind
from streams.scoring import features as f
from streams.windows.patient import PatientWindow

MIN = 60_000
NOW = 1_767_225_600_000 + 12 * 60 * MIN  # noon UTC


def test_glucose_input_places_readings_on_the_grid_and_marks_gaps() -> None:
    readings = [(NOW - k * 5 * MIN, 100.0 + k) for k in range(10) if k != 3][::-1]
    x = f.glucose_input(readings, NOW)
    assert x.shape == (f.GLUCOSE.steps, len(f.GLUCOSE.channels))
    assert x.dtype == np.float32
    assert x[-1, 1] == 1 and x[-4, 1] == 0  # slot 3 back is a gap
    assert math.isclose(x[-1, 0], math.log(100 / 140), rel_tol=1e-6)
    # a gap carries the previous reading forward and counts the time since it
    assert math.isclose(x[-4, 0], math.log(104 / 140), rel_tol=1e-6)
    assert math.isclose(x[-4, 2], 5 / 60, rel_tol=1e-6)
    # falling 1 mg/dL per 5 min: -0.2 mg/dL/min over 15 min, scaled by 1/2
    assert math.isclose(x[-6, 3], -0.1, rel_tol=1e-5)
    # across the gap the carried value counts: (100 - 104) / 15 / 2
    assert math.isclose(x[-1, 3], -4 / 15 / 2, rel_tol=1e-5)
    # before the first reading: back-filled, not observed, no slope
    assert (x[:26, 1] == 0).all() and (x[:29, 3] == 0).all()
    # time of day of the last slot (noon UTC)
    assert math.isclose(x[-1, 5], -1.0, abs_tol=1e-3)


def test_glucose_input_without_readings_is_all_gap() -> None:
    x = f.glucose_input([], NOW)
    assert (x[:, 1] == 0).all() and (x[:, 2] == 1).all()


def test_readings_outside_the_window_are_ignored() -> None:
    old = [(NOW - 4 * 60 * MIN, 300.0)]
    assert not f.glucose_input(old, NOW)[:, 1].any()


def test_vitals_input_bins_hours_and_uses_the_personal_baseline() -> None:
    vitals = {"8867-4": [(NOW - 2 * 60 * MIN, 70.0), (NOW - 1 * 60 * MIN, 110.0)]}
    x = f.vitals_input(vitals, {"8867-4": (70.0, 5.0)}, NOW)
    assert x.shape == (f.VITALS.steps, len(f.VITALS.channels))
    assert x[-2, 0] == (110 - 80) / 20 and x[-2, 1] == 1
    assert x[-1, 1] == 0 and x[-1, 0] == x[-2, 0]  # carried forward into the current hour
    assert math.isclose(x[-2, 2], 6 / 3)  # z = 8 clipped at 6, scaled by 1/3
    assert (x[:, 3:] == 0).all()  # other signals never measured


def test_window_inputs_use_the_latest_reading_of_their_signals() -> None:
    window = PatientWindow("p")
    for k in range(6):
        window.apply_value(
            "99504-3",
            Kind.GLUCOSE,
            NOW - k * 5 * MIN,
            120.0,
            allowed_lateness_ms=7_200_000,
            max_vital_samples=288,
        )
    assert f.window_vitals_input(window) is None
    window.apply_value(
        "8867-4",
        Kind.VITAL,
        NOW + 30 * MIN,
        80.0,
        allowed_lateness_ms=7_200_000,
        max_vital_samples=288,
    )
    glucose = f.window_glucose_input(window)
    assert glucose is not None and glucose[-1, 1] == 1  # at the CGM's time, not the vital's


def test_contract_hashes_are_stable_and_distinct() -> None:
    assert f.contract_hash(f.GLUCOSE) == f.contract_hash(f.GLUCOSE)
    assert f.contract_hash(f.GLUCOSE) != f.contract_hash(f.VITALS)
    assert len(f.contract_hash(f.VITALS)) == 64
