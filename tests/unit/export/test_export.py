"""Train tiny models, evaluate, export to ONNX and serve them: parity, manifests, refusals."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from export import onnx_export
from export.onnx_export import ExportError, export
from models.training import TrainConfig, load_checkpoint
from streams.scoring.manifest import Manifest
from streams.scoring.onnx import ModelError, ModelStore, OnnxModel

TINY = TrainConfig(epochs=1, batch_size=128, seed=1)
GLUCOSE_PATIENTS = ("adult#001", "adult#008", "adult#009")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny glucose and deterioration checkpoints with their evaluations."""
    root = tmp_path_factory.mktemp("models")
    cache, reports = root / "cache", root / "reports"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # simglucose imports pkg_resources
        from models.glucose.evaluate import evaluate as evaluate_glucose
        from models.glucose.train import train as train_glucose
        from models.vitals.evaluate import evaluate as evaluate_vitals
        from models.vitals.train import train as train_vitals

        train_glucose(
            root / "glucose.pt",
            patients=GLUCOSE_PATIENTS,
            days=2,
            seed=1,
            cache=cache,
            hidden=8,
            config=TINY,
            progress=False,
        )
        evaluate_glucose(root / "glucose.pt", reports, cache)
        train_vitals(
            root / "deterioration.pt",
            patients=80,
            days=2,
            seed=1,
            cache=cache,
            hidden=8,
            config=TINY,
            progress=False,
        )
        evaluate_vitals(root / "deterioration.pt", reports, cache, rounds=20)
    return {"root": root, "cache": cache, "reports": reports}


@pytest.fixture(scope="module")
def exported(trained: dict[str, Path]) -> Path:
    out = trained["root"] / "onnx"
    for kind in ("glucose", "deterioration"):
        export(
            trained["root"] / f"{kind}.pt",
            out,
            version="0.1.0",
            cache=trained["cache"],
            report_path=trained["reports"] / f"{kind}.json",
        )
    return out


def test_reports_have_every_baseline_and_plots(trained: dict[str, Path]) -> None:
    reports = trained["reports"]
    glucose = json.loads((reports / "glucose.json").read_text())
    assert set(glucose["forecast"]) == {"model", "last_value", "linear", "ar2", "patient_ar"}
    assert set(glucose["alarms"]) >= {"model", "ar2", "threshold_70"}
    deterioration = json.loads((reports / "deterioration.json").read_text())
    assert 0 <= deterioration["simulated"]["model"]["auroc"] <= 1
    assert deterioration["mimic"]["24h"]["patients"] > 50  # the real demo was replayed
    for name in (
        "glucose_clarke",
        "glucose_alarms",
        "glucose_example",
        "deterioration_reliability",
        "deterioration_roc",
    ):
        assert (reports / f"{name}.png").stat().st_size > 1000
    assert "| Nightscout AR2 |" in (reports / "glucose.md").read_text()


def test_export_writes_a_checked_manifest(exported: Path) -> None:
    manifest = Manifest.read(exported / "glucose" / "0.1.0" / "manifest.json")
    assert manifest.family == "glucose" and manifest.version == "0.1.0"
    assert [o.name for o in manifest.outputs] == ["forecast_mg_dl", "p_hypo_30"]
    assert manifest.inputs[0].shape == ["batch", "seq", 6]
    assert "p_low_30" in manifest.thresholds
    parity = manifest.export["parity"]
    assert parity["max_difference"] <= onnx_export.TOLERANCE
    assert [1, 18] in parity["checked_batch_seq"] and [256, 72] in parity["checked_batch_seq"]


def test_served_models_match_torch(trained: dict[str, Path], exported: Path) -> None:
    for kind, steps, channels in (("glucose", 36, 6), ("deterioration", 24, 19)):
        model = OnnxModel(exported / kind / "0.1.0", provider="cpu")
        assert model.provider == "CPUExecutionProvider"
        net = onnx_export.load_model(load_checkpoint(trained["root"] / f"{kind}.pt"))
        x = np.random.default_rng(0).normal(size=(5, steps, channels)).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x))
        expected = expected if isinstance(expected, tuple) else (expected,)
        for e, got in zip(expected, model.run(x), strict=True):
            assert np.allclose(e.numpy(), got, rtol=1e-4, atol=1e-5)


def test_a_model_built_for_other_features_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "glucose" / "0.1.0"
    shutil.copytree(exported / "glucose" / "0.1.0", copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["feature_contract"]["hash"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="feature contract"):
        OnnxModel(copy)


def test_export_refuses_a_checkpoint_of_other_features(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(trained["root"] / "glucose.pt")
    checkpoint["contract_hash"] = "f" * 64
    torch.save(checkpoint, tmp_path / "stale.pt")
    with pytest.raises(ExportError, match="retrain"):
        export(
            tmp_path / "stale.pt",
            tmp_path / "out",
            version="1.0.0",
            cache=trained["cache"],
            report_path=trained["reports"] / "glucose.json",
        )


def test_export_refuses_an_evaluation_of_another_checkpoint(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="another checkpoint"):
        export(
            trained["root"] / "glucose.pt",
            tmp_path,
            version="1.0.0",
            cache=trained["cache"],
            report_path=trained["reports"] / "deterioration.json",
        )


def test_parity_failure_refuses_the_export(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no model can pass: the check runs
    with pytest.raises(ExportError, match="parity check failed"):
        export(
            trained["root"] / "glucose.pt",
            tmp_path,
            version="1.0.0",
            cache=trained["cache"],
            report_path=trained["reports"] / "glucose.json",
        )
    assert not (tmp_path / "glucose" / "1.0.0").exists()  # nothing half-written is served


def test_store_serves_the_newest_version_and_picks_up_new_ones(
    exported: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(exported / "glucose" / "0.1.0", root / "glucose" / "0.1.0")
    store = ModelStore(root, ["glucose"], provider="cpu")
    assert store.load()["glucose"].primary.manifest.version == "0.1.0"
    assert store.refresh() == []
    shutil.copytree(exported / "glucose" / "0.1.0", root / "glucose" / "0.10.0")
    (root / "glucose" / "0.2.0.staging").mkdir()  # never mistaken for a version
    assert store.versions("glucose") == ["0.1.0", "0.10.0"]
    data = json.loads((root / "glucose" / "0.10.0" / "manifest.json").read_text())
    data["version"] = "0.10.0"
    (root / "glucose" / "0.10.0" / "manifest.json").write_text(json.dumps(data))
    assert store.refresh() == ["glucose@0.10.0"]
    pinned = ModelStore(root, ["glucose"], pinned={"glucose": "0.1.0"}, provider="cpu")
    assert pinned.load()["glucose"].primary.manifest.version == "0.1.0"
    with pytest.raises(ModelError, match="not found"):
        ModelStore(root, ["glucose"], pinned={"glucose": "9.9.9"}).load()


def test_a_shipped_model_is_issued_again_with_the_policy_its_evaluation_chose(
    tmp_path: Path,
) -> None:
    """``bedside export <shipped>/manifest.json --report ...``: the same ONNX file, a new
    immutable version whose thresholds and gate are the report's; a report of another
    version is refused."""
    root = Path(__file__).resolve().parents[3]
    shipped = root / "streams/scoring/shipped/glucose/2.3.0"
    report = json.loads((root / "models/reports/glucose_real.json").read_text())
    report["gate"] = {**report["gate"], "threshold_p_low_30": 0.6, "predicted_low_cgm_below": 80.0}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    target = onnx_export.reissue(
        shipped / "manifest.json", tmp_path / "out", version="9.9.9", report_path=path
    )
    manifest = Manifest.read(target / "manifest.json")
    assert manifest.version == "9.9.9" and manifest.thresholds == {"p_low_30": 0.6}
    assert manifest.gate is not None and manifest.gate.predicted_low_cgm_below == 80.0
    # the report's calibration serves with it (its threshold is on that scale)
    fitted = report["gate"]["calibration"]["p_low_30"]
    assert manifest.gate.calibration["p_low_30"].raw == fitted["raw"]
    assert manifest.gate.calibrate("p_low_30", fitted["raw"][-1]) == fitted["calibrated"][-1]
    assert (target / "model.onnx").read_bytes() == (shipped / "model.onnx").read_bytes()
    with pytest.raises(ExportError, match="immutable"):
        onnx_export.reissue(
            shipped / "manifest.json", tmp_path / "out", version="9.9.9", report_path=path
        )
    path.write_text(json.dumps({**report, "model_key": "glucose@1.0.0"}))
    with pytest.raises(ExportError, match="does not evaluate"):
        onnx_export.reissue(
            shipped / "manifest.json", tmp_path / "out", version="9.9.10", report_path=path
        )
