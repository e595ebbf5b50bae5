"""ONNX models at serving time: one session per model version, versioned model directories.

Provider choice (``auto | cpu | cuda``): ``auto`` asks for the CUDA execution provider only
when ONNX Runtime offers it *and* a GPU is present (onnxruntime-gpu lists CUDA even on
machines without one), else CPU; the provider actually granted is logged and reported.
A model whose manifest names another feature-contract hash than the serving code's is
refused: it was trained on inputs this code does not produce.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .features import CONTRACTS, contract_hash
from .manifest import Manifest, version_key

log = logging.getLogger(__name__)
SHIPPED_MODELS = Path(__file__).parent / "shipped"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class ModelError(RuntimeError):
    """A model cannot be served (missing, malformed, or built for other features)."""


def gpu_present() -> bool:
    """An NVIDIA GPU is visible to this process (device nodes of the kernel driver)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def choose_providers(setting: str, available: list[str], gpu: bool) -> list[str]:
    if setting == "cpu":
        return [CPU]
    cuda_ok = CUDA in available and gpu
    if setting == "cuda" and not cuda_ok:
        why = "no GPU is visible" if CUDA in available else "onnxruntime-gpu is not installed"
        msg = f"provider 'cuda' was asked for but {why}: use 'auto' or 'cpu'"
        raise ModelError(msg)
    return [CUDA, CPU] if cuda_ok else [CPU]


class OnnxModel:
    """One model version: its manifest and an ONNX Runtime session, checked and warmed up."""

    def __init__(self, directory: Path, *, provider: str = "auto", threads: int = 1) -> None:
        manifest_path, model_path = directory / "manifest.json", directory / "model.onnx"
        if not manifest_path.exists() or not model_path.exists():
            msg = f"{directory} needs model.onnx and manifest.json"
            raise ModelError(msg)
        self.manifest = Manifest.read(manifest_path)
        self.check_contract(self.manifest)
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - an install problem, said clearly
            msg = "ONNX Runtime is missing: pip install 'bedside[cpu]' (or [gpu])"
            raise ModelError(msg) from error
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if CUDA in ort.get_available_providers() and gpu_present():
            ort.preload_dlls()  # lets the CUDA provider find pip-installed cuBLAS/cuDNN
        providers = choose_providers(provider, ort.get_available_providers(), gpu_present())
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        expected = [o.name for o in self.manifest.outputs]
        if self.output_names != expected or self.input_name != self.manifest.inputs[0].name:
            msg = f"{model_path}: inputs/outputs differ from its manifest ({expected})"
            raise ModelError(msg)
        self._lock = threading.Lock()
        contract = CONTRACTS[self.manifest.feature_contract.name]
        self.run(np.zeros((8, contract.steps, len(contract.channels)), np.float32))  # warm-up
        log.info("model %s loaded on %s (%d threads)", self.key, self.provider, threads)

    @staticmethod
    def check_contract(manifest: Manifest) -> None:
        ref = manifest.feature_contract
        contract = CONTRACTS.get(ref.name)
        if contract is None:
            msg = f"model {manifest.name}@{manifest.version}: unknown feature contract {ref.name}"
            raise ModelError(msg)
        serving = contract_hash(contract)
        if ref.hash != serving:
            msg = (
                f"model {manifest.name}@{manifest.version} was trained with feature contract "
                f"{ref.name} hash {ref.hash[:12]}, the serving code's is {serving[:12]}: "
                "retrain and export it with this code"
            )
            raise ModelError(msg)

    @property
    def key(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Score a batch (batch, steps, channels); one output array per manifest output."""
        with self._lock:  # one call at a time per session: predictable latency per call
            outputs: list[np.ndarray] = self.session.run(None, {self.input_name: x})
        return outputs


@dataclass(frozen=True)
class Loaded:
    primary: OnnxModel
    shadow: OnnxModel | None = None


class ModelStore:
    """Finds model versions in a directory, loads the chosen ones and notices new ones."""

    def __init__(
        self,
        root: Path | None,
        names: list[str],
        *,
        pinned: dict[str, str] | None = None,
        shadow: dict[str, str] | None = None,
        provider: str = "auto",
        threads: int = 1,
    ) -> None:
        self.root = root or SHIPPED_MODELS
        self.names = names
        self.pinned = pinned or {}
        self.shadow_versions = shadow or {}
        self.provider, self.threads = provider, threads
        self.loaded: dict[str, Loaded] = {}

    def versions(self, name: str) -> list[str]:
        directory = self.root / name
        if not directory.is_dir():
            return []
        found = []
        for child in directory.iterdir():
            try:
                version_key(child.name)
            except ValueError:
                continue  # staging directories and strays
            if (child / "manifest.json").exists() and (child / "model.onnx").exists():
                found.append(child.name)
        return sorted(found, key=version_key)

    def _wanted(self, name: str) -> str:
        versions = self.versions(name)
        wanted = self.pinned.get(name) or (versions[-1] if versions else None)
        if wanted is None or wanted not in versions:
            msg = f"model {name} version {wanted or '(any)'} not found under {self.root / name}"
            raise ModelError(msg)
        return wanted

    def _load(self, name: str, version: str) -> OnnxModel:
        return OnnxModel(self.root / name / version, provider=self.provider, threads=self.threads)

    def load(self) -> dict[str, Loaded]:
        """Load every configured model (and shadow); raises ModelError on any problem."""
        self.loaded = {
            name: Loaded(
                self._load(name, self._wanted(name)),
                self._load(name, self.shadow_versions[name])
                if name in self.shadow_versions
                else None,
            )
            for name in self.names
        }
        return self.loaded

    def refresh(self) -> list[str]:
        """Swap in newer versions of unpinned models; a bad new version is logged, not used."""
        changed = []
        for name, current in list(self.loaded.items()):
            if name in self.pinned:
                continue
            versions = self.versions(name)
            if not versions or versions[-1] == current.primary.manifest.version:
                continue
            try:
                model = self._load(name, versions[-1])
            except (ModelError, ValueError, OSError) as error:
                log.error("model %s version %s not loaded: %s", name, versions[-1], error)
                continue
            self.loaded[name] = Loaded(model, current.shadow)
            changed.append(model.key)
            log.info("model %s now serves version %s", name, model.manifest.version)
        return changed

    def describe(self) -> dict[str, Any]:
        return {
            name: {
                "primary": loaded.primary.key,
                "shadow": loaded.shadow.key if loaded.shadow else None,
                "provider": loaded.primary.provider,
            }
            for name, loaded in self.loaded.items()
        }
