"""torch checkpoint -> ONNX model + manifest, with a parity check that fails the export.

Exporter: torch 2.13's dynamo exporter (``dynamo=True``, opset 20) with string-named dynamic
axes for batch and, where torch.export allows it, sequence length. It gives a clean graph
(one GRU op) at parity ~1e-7; the TorchScript exporter gives the same graph but is
deprecated. The dynamo exporter has one known trap here: a ``Dim`` object can silently
produce a model fixed at one length, so the parity check runs several batch sizes and (for
a dynamic sequence axis) lengths, and refuses the model on any shape or value mismatch.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.nets import HORIZONS_MIN, HYPO_THRESHOLDS, DeteriorationGRU, GlucoseGRU
from models.training import load_checkpoint
from streams.scoring import features
from streams.scoring.manifest import FeatureContractRef, Gate, Manifest, TensorSpec

OPSET = 20
# torch vs ONNX Runtime, any output: |difference| / max(1, |torch value|) <= 1e-4 (absolute
# for probabilities, relative for forecasts in mg/dL, where float32 steps are ~3e-5 at 400)
TOLERANCE = 1e-4
PARITY_BATCHES = (1, 7, 256)
log = logging.getLogger(__name__)

FAMILIES: dict[str, dict[str, Any]] = {
    "glucose": {
        "net": GlucoseGRU,
        "contract": features.GLUCOSE,
        "outputs": [
            TensorSpec(
                name="forecast_mg_dl",
                shape=["batch", len(HORIZONS_MIN)],
                meaning=f"glucose forecast (mg/dL) at {list(HORIZONS_MIN)} min ahead",
            ),
            TensorSpec(
                name="p_hypo_30",
                shape=["batch", len(HYPO_THRESHOLDS)],
                meaning="P(glucose < 70 mg/dL) and P(< 54 mg/dL) within 30 min",
            ),
        ],
        "meaning": "Forecast of CGM glucose 15-60 min ahead and the probability of "
        "hypoglycaemia (< 70, < 54 mg/dL) within 30 min. Decision support, not a diagnosis.",
        "normalisation": {
            "log_glucose_center_mg_dl": features.GLUCOSE_CENTER,
            "clip_mg_dl": list(features.GLUCOSE_CLIP),
        },
    },
    "deterioration": {
        "net": DeteriorationGRU,
        "contract": features.VITALS,
        "outputs": [
            TensorSpec(
                name="p_deterioration",
                shape=["batch", 1],
                meaning="P(clinical deterioration event within 12 h)",
            ),
        ],
        "meaning": "Probability that the patient has a deterioration event (rapid-response "
        "call / ICU transfer in the simulated cohort) within 12 h. Decision support only.",
        "normalisation": {
            s.name: {"center": s.center, "scale": s.scale} for s in features.VITAL_SIGNALS
        },
    },
}


class ExportError(RuntimeError):
    """The export was refused (parity, shape or manifest problem)."""


def load_model(checkpoint: dict[str, Any]) -> torch.nn.Module:
    family = FAMILIES[checkpoint["kind"]]
    model: torch.nn.Module = family["net"](**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def export_onnx(model: torch.nn.Module, kind: str, path: Path) -> bool:
    """Write the ONNX file; True if its sequence axis is dynamic (the batch axis always is).

    A dynamic sequence axis is tried first; where torch.export specialises it (it did for
    the deterioration GRU in torch 2.13), the model is exported at the contract's length.
    """
    contract = FAMILIES[kind]["contract"]
    example = torch.zeros(2, contract.steps, len(contract.channels))
    names = [o.name for o in FAMILIES[kind]["outputs"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    # the exporter logs a warning per missing torchvision op; torchvision is not used here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    for dynamic in ({0: "batch", 1: "seq"}, {0: "batch"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    opset_version=OPSET,
                    input_names=["x"],
                    output_names=names,
                    dynamic_shapes={"x": dynamic},
                    external_data=False,
                    verbose=False,
                )
            except Exception as error:  # noqa: BLE001 - torch.export's errors vary by version
                if 1 in dynamic:
                    log.info("dynamic sequence length not exportable (%s); fixing it", error)
                    continue
                raise
        if program is None:
            msg = "torch.onnx.export returned no program"
            raise ExportError(msg)
        program.save(str(path), external_data=False)
        return 1 in dynamic
    msg = "no export attempted"  # pragma: no cover - the loop returns or raises
    raise ExportError(msg)


def parity(
    model: torch.nn.Module, kind: str, path: Path, windows: np.ndarray, dynamic_seq: bool = True
) -> dict[str, Any]:
    """Worst torch vs ONNX Runtime difference over batch sizes and sequence lengths."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    steps = windows.shape[1]
    worst, checked = 0.0, []
    for batch in PARITY_BATCHES:
        for seq in (steps, steps // 2, steps * 2) if dynamic_seq else (steps,):
            x = windows[:batch]
            if seq < steps:
                x = x[:, -seq:]
            elif seq > steps:
                x = np.concatenate([x, x], axis=1)
            with torch.no_grad():
                expected = model(torch.from_numpy(np.ascontiguousarray(x)))
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
            for e, g in zip(expected, got, strict=True):
                if tuple(e.shape) != g.shape:
                    msg = (
                        f"shape mismatch at batch {batch}, seq {seq}: {tuple(e.shape)} vs {g.shape}"
                    )
                    raise ExportError(msg)
                expected_values = e.numpy()
                difference = np.abs(expected_values - g) / np.maximum(1.0, np.abs(expected_values))
                worst = max(worst, float(np.max(difference)))
            checked.append([int(len(x)), int(seq)])
    if worst > TOLERANCE:
        msg = f"parity check failed: max difference {worst:.3g} > {TOLERANCE:g}"
        raise ExportError(msg)
    return {"max_difference": worst, "tolerance": TOLERANCE, "checked_batch_seq": checked}


def held_out_windows(checkpoint: dict[str, Any], cache: Path, n: int = 512) -> np.ndarray:
    """Model inputs of held-out (test) patients from the training cohort (cached)."""
    data = checkpoint["data"]
    if checkpoint["kind"] == "glucose" and "split" in data:  # trained on real CGM
        from models.glucose import real

        test = set(data["split"]["test"])
        x = real.replay([v for v in real.load_shanghai() if v.patient in test]).x
    elif checkpoint["kind"] == "glucose":
        from models.glucose.dataset import TEST_PATIENTS, cohort, samples

        held_out = tuple(p for p in data.get("patient_names", TEST_PATIENTS) if p in TEST_PATIENTS)
        traces = cohort(data["days_per_patient"], data["seed"], cache, patients=held_out)
        x = samples(traces).x
    else:
        from models.vitals.dataset import cohort as vitals_cohort
        from models.vitals.dataset import split_of

        s, _, _ = vitals_cohort(data["patients"], data["days_per_patient"], data["seed"], cache)
        x = s.x[split_of(s.patient, data["seed"]) == "test"]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(x), size=min(n, len(x)), replace=False)
    return np.ascontiguousarray(x[np.sort(chosen)])


def real_glucose_headline(report: dict[str, Any]) -> dict[str, Any]:
    """Test-patient figures of a model evaluated on real CGM (``evaluate glucose --real``),
    per population at the recorded 15-min rate, next to AR2's and last value's."""
    out: dict[str, Any] = {"report": "models/reports/glucose_real.md", "data": report["data"]}
    for population, rates in report["test"].items():
        f = rates["15min"]
        out[population] = {
            "rmse_mg_dl": {
                h: {m: row[m]["rmse"] for m in ("served", "model", "ar2", "last")}
                for h, row in f["horizons"].items()
            },
            "alarms": {k: f["alarms"][k] for k in ("predicted_low", "ar2", "cgm_below_80")},
            "brier": f["calibration"]["brier"],
            "brier_constant": f["calibration"]["brier_constant"],
        }
    return out


def headline(kind: str, report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Evaluation headline metrics and recommended thresholds from ``bedside evaluate``."""
    if kind == "glucose" and "gate" in report:
        return real_glucose_headline(report), {"p_low_30": report["gate"]["threshold_p_low_30"]}
    if kind == "glucose":
        model, ar2 = report["forecast"]["model"], report["forecast"]["ar2"]
        alarms = report["alarms"]["model"]
        return (
            {
                "rmse_30_mg_dl": model["rmse_30"],
                "ar2_rmse_30_mg_dl": ar2["rmse_30"],
                "hypo_alarm_precision": alarms["precision"],
                "hypo_alarm_recall": alarms["recall"],
                "false_alarms_per_patient_day": alarms["false_per_day"],
                "median_lead_min": alarms["median_lead_min"],
                "report": "models/reports/glucose.md",
            },
            {"p_low_30": report["threshold_p_low_30"]},
        )
    sim = report["simulated"]
    return (
        {
            "auroc_simulated": sim["model"]["auroc"],
            "news2_auroc_simulated": sim["news2"]["auroc"],
            "auroc_mimic_demo_24h": report["mimic"]["24h"]["model"]["auroc"],
            "report": "models/reports/deterioration.md",
        },
        {"p_deterioration": report["recommended_threshold"]},
    )


def _matching_report(
    path: Path, checkpoint: dict[str, Any], checkpoint_path: Path
) -> dict[str, Any]:
    """The evaluation of exactly this checkpoint: its thresholds go into the manifest."""
    if not path.exists():
        msg = f"no evaluation at {path}: run `bedside evaluate {checkpoint['kind']}` first"
        raise ExportError(msg)
    report: dict[str, Any] = json.loads(path.read_text())
    if report.get("checkpoint_created_at") != checkpoint["created_at"]:
        msg = (
            f"{path} evaluates another checkpoint than {checkpoint_path}: run "
            f"`bedside evaluate {checkpoint['kind']} --checkpoint {checkpoint_path}`"
        )
        raise ExportError(msg)
    return report


def _gate(report: dict[str, Any]) -> Gate | None:
    if "gate" not in report:
        return None
    gate = report["gate"]
    return Gate(
        forecast=gate["forecast"],
        predicted_low=gate["predicted_low"],
        predicted_low_rule=gate.get("predicted_low_rule", "probability"),
        predicted_low_cgm_below=gate.get("predicted_low_cgm_below"),
        personal=list(gate.get("personal", [])),
        validated_on=f"validation patients of {report['data']}",
        validation_rmse=gate["validation_rmse"],
        calibration=gate.get("calibration", {}),
    )


def reissue(manifest_path: Path, out: Path, *, version: str, report_path: Path) -> Path:
    """A shipped model version issued again as ``version``: the same ONNX file (so the same
    parity), its thresholds, gate and headline figures from ``report_path``, an evaluation of
    that file as it serves (``bedside evaluate glucose --real --model-dir``). Versions are
    immutable: a changed serving policy is a new version."""
    old = Manifest.model_validate_json(manifest_path.read_text())
    report: dict[str, Any] = json.loads(report_path.read_text())
    if report.get("model_key") != f"{old.name}@{old.version}":
        msg = f"{report_path} does not evaluate {old.name}@{old.version} as shipped"
        raise ExportError(msg)
    evaluation, thresholds = headline(old.family, report)
    manifest = old.model_copy(
        update={
            "version": version,
            "created_at": datetime.now(UTC),
            "thresholds": thresholds,
            "evaluation": evaluation,
            "gate": _gate(report),
        }
    )
    target = out / old.name / version
    if target.exists():
        msg = f"{target} exists: versions are immutable"
        raise ExportError(msg)
    target.mkdir(parents=True)
    shutil.copyfile(manifest_path.parent / "model.onnx", target / "model.onnx")
    Manifest.model_validate(manifest.model_dump()).write(target / "manifest.json")
    return target


def export(
    checkpoint_path: Path,
    out: Path,
    *,
    version: str,
    cache: Path,
    report_path: Path,
    name: str | None = None,
) -> Path:
    """Export, check parity, write ``<out>/<name>/<version>/{model.onnx, manifest.json}``."""
    checkpoint = load_checkpoint(checkpoint_path)
    kind = checkpoint["kind"]
    family = FAMILIES[kind]
    contract = family["contract"]
    serving_hash = features.contract_hash(contract)
    if checkpoint["contract_hash"] != serving_hash:
        msg = (
            f"{checkpoint_path} was trained with feature contract hash "
            f"{checkpoint['contract_hash'][:12]}, the serving code's is {serving_hash[:12]}: "
            "retrain before exporting"
        )
        raise ExportError(msg)
    name = name or kind
    target = out / name / version
    if target.exists():
        msg = f"{target} exists: versions are immutable, choose a new version"
        raise ExportError(msg)
    report = _matching_report(report_path, checkpoint, checkpoint_path)
    model = load_model(checkpoint)
    staging = out / name / f".{version}.staging"
    staging.mkdir(parents=True, exist_ok=True)
    onnx_path = staging / "model.onnx"
    dynamic_seq = export_onnx(model, kind, onnx_path)
    checked = parity(model, kind, onnx_path, held_out_windows(checkpoint, cache), dynamic_seq)
    metrics, thresholds = headline(kind, report)
    manifest = Manifest(
        name=name,
        family=kind,
        version=version,
        created_at=datetime.now(UTC),
        inputs=[
            TensorSpec(
                name="x",
                shape=["batch", "seq", len(contract.channels)],
                meaning=f"feature contract {contract.name}: {list(contract.channels)}",
            )
        ],
        outputs=family["outputs"],
        feature_contract=FeatureContractRef(
            name=contract.name, version=contract.version, hash=serving_hash
        ),
        normalisation=family["normalisation"],
        output_meaning=family["meaning"],
        thresholds=thresholds,
        training_data=checkpoint["data"],
        evaluation=metrics,
        gate=_gate(report),
        export={
            "exporter": "torch.onnx dynamo",
            "torch": torch.__version__,
            "opset": OPSET,
            "parity": checked,
            "parameters": checkpoint["training"]["parameters"],
            "flops_per_sequence": checkpoint["training"]["flops_per_sequence"],
        },
    )
    manifest.write(staging / "manifest.json")
    staging.rename(target)  # the version appears complete or not at all
    return target
