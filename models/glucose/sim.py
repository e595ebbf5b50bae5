"""Multi-day CGM cohorts from the UVa/Padova T1D simulator (simglucose), made realistic.

simglucose supplies the 30 virtual patients and the physiology (its ODE model and solver,
unchanged); its default basal-bolus controller knows every meal's carbs exactly, so adults
barely leave range, and its sensors have no drift, dropouts or compression lows. This module
drives the patient model itself with what real people and sensors do:

- meals at jittered times, snacks, carb counting off by a log-normal factor (sd 0.25,
  adolescents 0.35); boluses missed (5-15 %) or late (15-60 min); correction boluses above
  150 mg/dL; basal rate mis-set by -10..+15 %;
- insulin sensitivity that changes from day to day (x0.85-1.2) and during exercise
  (x1.5-2.2 for 45-90 min, x1.25 for 6 h after), through the model's insulin-dependent
  utilisation ``Vmx``;
- rescue carbs (15-20 g, 10-25 min late) when the CGM reads < 70, not always taken;
- a CGM on the interstitial glucose every 5 min with a per-session gain drift, AR(1) noise,
  night-time compression lows (a false drop of 25-45 % for 20-60 min), dropouts (single
  readings and gaps of up to 3 h), integer readings clipped to 40-400 mg/dL.

Ground truth is the plasma glucose (``BG``) on the same 5-minute grid. Patient parameters
are passed to the solver as a plain object instead of a pandas row: same output, ~5x faster.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from importlib import resources
from types import SimpleNamespace

import numpy as np
import pandas as pd

STEP_MIN = 5
DAY_MIN = 1440
PATIENTS = tuple(
    f"{group}#{i:03d}" for group in ("adolescent", "adult", "child") for i in range(1, 11)
)


@dataclass
class PatientTrace:
    """One virtual patient's simulated days on the 5-minute grid (minute 0 = midnight)."""

    name: str
    minutes: np.ndarray  # int, 0, 5, 10, ...
    bg: np.ndarray  # true plasma glucose, mg/dL
    cgm: np.ndarray  # sensor reading, mg/dL, NaN where missing
    artefact: np.ndarray  # bool: reading inside a compression low

    @property
    def group(self) -> str:
        return self.name.split("#")[0]


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    params = resources.files("simglucose") / "params"
    with (params / "vpatient_params.csv").open() as a, (params / "Quest.csv").open() as b:
        return pd.read_csv(a), pd.read_csv(b)


def _meal_plan(rng: np.random.Generator, days: int, body_weight: float, group: str) -> list:
    """(minute, grams) of meals and snacks."""
    scale = min(1.0, 0.45 + body_weight / 100)  # children eat less
    meals = []
    for day in range(days):
        base = day * DAY_MIN
        for centre, grams, p in ((7 * 60, 45, 0.95), (12.5 * 60, 70, 1.0), (19 * 60, 80, 1.0)):
            if rng.random() < p:
                t = base + int(centre + rng.normal(0, 40))
                meals.append((t, max(10.0, rng.normal(grams, grams * 0.25) * scale)))
        for centre in (10 * 60, 16 * 60, 22 * 60):
            if rng.random() < (0.5 if group != "adult" else 0.3):
                meals.append((base + int(centre + rng.normal(0, 45)), rng.uniform(10, 30) * scale))
    return sorted(meals)


def simulate_patient(name: str, days: float, seed: int) -> PatientTrace:
    """Simulate ``days`` of one virtual patient; deterministic for a seed."""
    with warnings.catch_warnings():  # simglucose and gym import pkg_resources and distutils
        warnings.simplefilter("ignore")
        from simglucose.patient.t1dpatient import Action, T1DPatient

    logging.getLogger("simglucose").setLevel(logging.WARNING)
    table, quest = _tables()
    row = table.loc[table.Name == name].squeeze()
    q = quest.loc[quest.Name == name].squeeze()
    rng = np.random.default_rng(seed)
    patient = T1DPatient(row)
    params = SimpleNamespace(**{k: v for k, v in row.items()})
    patient._params = params  # plain attributes: identical output, much faster
    group = name.split("#")[0]
    base_vmx = float(row.Vmx)
    basal = float(row.u2ss * row.BW / 6000) * rng.uniform(0.9, 1.15)  # U/min
    carb_sd = 0.35 if group == "adolescent" else 0.25
    p_missed = {"adolescent": 0.15, "adult": 0.05, "child": 0.08}[group]

    total = int(days * DAY_MIN)
    whole_days = math.ceil(days)
    carbs = np.zeros(total + 1)
    pending_boluses: list[tuple[int, float]] = []
    for t, grams in _meal_plan(rng, whole_days, float(row.BW), group):
        if t < 0 or t >= total:
            continue
        carbs[t] += grams
        if rng.random() < p_missed:
            continue
        delay = int(rng.uniform(15, 60)) if rng.random() < 0.15 else 0
        pending_boluses.append((t + delay, grams * rng.lognormal(0, carb_sd)))
    sensitivity = np.ones(total + 1)
    for day in range(whole_days):
        base = day * DAY_MIN
        sensitivity[base : base + DAY_MIN] *= rng.uniform(0.85, 1.2)
        if rng.random() < 0.35:  # exercise in the afternoon or evening
            start = base + int(rng.uniform(15 * 60, 20 * 60))
            length = int(rng.uniform(45, 90))
            sensitivity[start : start + length] *= rng.uniform(1.5, 2.2)
            sensitivity[start + length : start + length + 360] *= 1.25

    minutes = np.arange(0, total, STEP_MIN)
    bg = np.empty(len(minutes))
    gsub = np.empty(len(minutes))
    boluses: dict[int, float] = {}
    for t, est in pending_boluses:
        if t < total:
            boluses[t] = boluses.get(t, 0.0) + est
    last_rescue = -10_000
    for t in range(total):
        if t % STEP_MIN == 0:
            i = t // STEP_MIN
            bg[i] = patient.state[3] / params.Vg
            gsub[i] = patient.state[12] / params.Vg
            if gsub[i] < 70 and t - last_rescue > 30 and rng.random() < 0.8:
                last_rescue = t
                at = t + int(rng.uniform(10, 25))
                if at < total:
                    carbs[at] += rng.uniform(15, 20)
        units = 0.0
        if t in boluses:
            reading = gsub[t // STEP_MIN]
            units = boluses[t] / float(q.CR)
            if reading > 150:
                units += (reading - 140) / float(q.CF)
        params.Vmx = base_vmx * sensitivity[t]
        patient.step(Action(CHO=float(carbs[t]), insulin=basal + units))
    cgm, artefact = sensor(gsub, rng)
    return PatientTrace(name, minutes, bg, cgm, artefact)


def sensor(gsub: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CGM readings of the interstitial glucose: drift, noise, compression lows, dropouts."""
    n = len(gsub)
    steps_per_day = DAY_MIN // STEP_MIN
    gain = np.empty(n)
    for start in range(0, n, 10 * steps_per_day):  # a new sensor every 10 days
        length = min(10 * steps_per_day, n - start)
        walk = np.cumsum(rng.normal(0, 0.002, length)) + rng.normal(0, 0.04)
        gain[start : start + length] = 1 + np.clip(walk, -0.15, 0.15)
    noise = np.empty(n)
    noise[0] = rng.normal()
    shocks = rng.normal(size=n)
    for i in range(1, n):
        noise[i] = 0.7 * noise[i - 1] + np.sqrt(1 - 0.49) * shocks[i]
    reading = gsub * gain + noise * (3.0 + 0.04 * gsub)
    artefact = np.zeros(n, dtype=bool)
    for day in range(n // steps_per_day + 1):
        if rng.random() < 0.25:  # a compression low this night
            start = day * steps_per_day + int(rng.uniform(0, 6 * 60 / STEP_MIN))
            length = int(rng.uniform(4, 12))
            depth = rng.uniform(0.25, 0.45)
            shape = np.sin(np.linspace(0, np.pi, length)) ** 0.5
            stop = min(n, start + length)
            if start < n:
                reading[start:stop] *= 1 - depth * shape[: stop - start]
                artefact[start:stop] = True
    missing = rng.random(n) < 0.01
    i = 0
    while i < n:
        if rng.random() < 0.003:  # a gap: signal loss, warm-up, phone out of range
            length = int(min(36, rng.geometric(1 / 8)))
            missing[i : i + length] = True
            i += length
        i += 1
    cgm = np.clip(np.round(reading), 40, 400).astype(float)
    cgm[missing] = np.nan
    return cgm, artefact
