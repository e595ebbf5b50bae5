"""The manifest that travels next to every exported ``.onnx`` model (``manifest.json``).

Model directory layout: ``<model dir>/<name>/<version>/{model.onnx, manifest.json}``; the
version is a semantic version, so the newest is well defined.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
Family = Literal["glucose", "deterioration"]


def version_key(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version)
    if match is None:
        msg = f"not a semantic version (MAJOR.MINOR.PATCH): {version!r}"
        raise ValueError(msg)
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    shape: list[int | str]  # a string names a dynamic axis ("batch")
    dtype: str = "float32"
    meaning: str = ""


class FeatureContractRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    hash: str


Source = Literal["model", "ar2"]
# when the model drives predicted_low: its probability alone, or only while the CGM is not
# rising (the 15-min rate the model reads is below 0), as validation chose
PredictedLowRule = Literal["probability", "probability_falling"]


class Calibration(BaseModel):
    """A monotone map from a model's raw probability to the rate observed on the validation
    patients (isotonic regression, pool-adjacent-violators): each pooled block's mean raw
    probability (``raw``, increasing) and its observed rate (``calibrated``, non-decreasing),
    linear between them and flat beyond the ends. Serving and every evaluation apply it the
    same way (:meth:`apply`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["isotonic"] = "isotonic"
    raw: list[float] = Field(min_length=1)
    calibrated: list[float] = Field(min_length=1)
    samples: int = Field(ge=1)  # validation samples it was fitted on

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        raw, calibrated = self.raw, self.calibrated
        if len(raw) != len(calibrated):
            msg = "raw and calibrated must have as many knots"
            raise ValueError(msg)
        if any(b <= a for a, b in zip(raw, raw[1:], strict=False)):
            msg = "raw knots must increase"
            raise ValueError(msg)
        if any(b < a for a, b in zip(calibrated, calibrated[1:], strict=False)):
            msg = "calibrated values must not decrease (the map is monotone)"
            raise ValueError(msg)
        if not all(0.0 <= v <= 1.0 for v in (*raw, *calibrated)):
            msg = "knots are probabilities: within [0, 1]"
            raise ValueError(msg)
        return self

    def apply(self, p: np.ndarray | float) -> np.ndarray | float:
        """The calibrated probability of ``p`` (element-wise for arrays; a float for a float)."""
        out = np.interp(p, self.raw, self.calibrated)
        return float(out) if np.ndim(out) == 0 else out


class Gate(BaseModel):
    """Where a glucose model serves, from its validation on real patients: per horizon
    (minutes) the model's forecast or AR2's; ``predicted_low`` from the model's probability
    or from the AR2 rule (``predicted_low_rule``: the probability alone, or only while the
    CGM falls). A model never serves where the rule it replaces was better."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forecast: dict[str, Source]
    predicted_low: Source
    predicted_low_rule: PredictedLowRule = "probability"
    # any-of: the model's warning or the CGM below this (mg/dL, at the default low of 70; a
    # patient's own low target moves it by as much), where validation chose the combination
    predicted_low_cgm_below: float | None = Field(None, ge=70.0, le=120.0)
    # horizons (minutes) at which the forecast's per-patient adaptation
    # (streams.scoring.personal) serves: where it lowered the validation patients' error
    personal: list[str] = Field(default_factory=list)
    validated_on: str
    validation_rmse: dict[str, dict[str, float]] = Field(default_factory=dict)
    # per probability output ("p_low_30", "p_urgent_low_30"): its calibration on the validation
    # patients; the threshold above is on the calibrated scale (absent: served raw)
    calibration: dict[str, Calibration] = Field(default_factory=dict)

    def calibrate(self, output: str, p: np.ndarray | float) -> np.ndarray | float:
        """``p`` (the model's ``output``) as it serves: calibrated where the gate has a map."""
        fitted = self.calibration.get(output)
        return p if fitted is None else fitted.apply(p)


class Manifest(BaseModel):
    """What a serving process needs to know about one exported model version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: Family
    version: str
    created_at: datetime
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    feature_contract: FeatureContractRef
    normalisation: dict[str, Any]
    output_meaning: str
    thresholds: dict[str, float]
    training_data: dict[str, Any]
    evaluation: dict[str, Any]
    export: dict[str, Any] = Field(default_factory=dict)  # exporter, opset, parity
    gate: Gate | None = None  # glucose: where it serves (absent: everywhere, as before gates)

    @field_validator("version")
    @classmethod
    def _semantic(cls, value: str) -> str:
        version_key(value)
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            msg = "created_at must carry a timezone (UTC)"
            raise ValueError(msg)
        return value

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.model_validate_json(path.read_bytes())

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")
