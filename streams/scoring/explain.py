"""Which signals drove a model's risk: occlusion over groups of input channels.

Each group of channels is replaced by a neutral value (the population centre, "not
deviating", or the glucose of 30 min ago for the recent trend), all variants are scored in
one call with the original, and a group's contribution is the drop in risk without it.
Computed only when a model's score reaches its alert threshold: one extra call of a few
rows per alerting patient, not per scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .features import GLUCOSE, VITAL_SIGNALS, VITALS

Run = Callable[[np.ndarray], list[np.ndarray]]
DISPLAY = {"spo2": "SpO2", "systolic_bp": "systolic BP"}


def _glucose_variants(x: np.ndarray) -> dict[str, np.ndarray]:
    recent = 6  # 30 min of 5-minute slots
    variants = {}
    flat = x.copy()  # the last 30 min held at the value of 30 min ago
    flat[-recent:, 0] = x[-recent - 1, 0]
    flat[-recent:, 3] = 0.0
    variants["30-min glucose trend"] = flat
    earlier = x.copy()  # the history before that held flat at the same value
    earlier[: -recent - 1, 0] = x[-recent - 1, 0]
    earlier[: -recent - 1, 3] = 0.0
    variants["3-h glucose history"] = earlier
    clock = x.copy()
    clock[:, 4:6] = 0.0
    variants["time of day"] = clock
    gaps = x.copy()
    gaps[:, 1], gaps[:, 2] = 1.0, 0.0
    variants["gaps in readings"] = gaps
    return variants


def _vitals_variants(x: np.ndarray) -> dict[str, np.ndarray]:
    variants = {}
    for index, signal in enumerate(VITAL_SIGNALS):
        occluded = x.copy()
        occluded[:, 3 * index] = 0.0  # the population centre
        occluded[:, 3 * index + 2] = 0.0  # no deviation from the personal baseline
        variants[DISPLAY.get(signal.name, signal.name.replace("_", " "))] = occluded
    oxygen = x.copy()
    oxygen[:, -1] = 0.0
    variants["supplemental oxygen"] = oxygen
    return variants


def drivers(family: str, x: np.ndarray, run: Run, top: int = 3) -> list[dict[str, float | str]]:
    """The ``top`` groups whose removal lowers the risk most (contribution > 0 only)."""
    if family == "glucose":
        variants, output, column = _glucose_variants(x), 1, 0
        assert x.shape[1] == len(GLUCOSE.channels)
    else:
        variants, output, column = _vitals_variants(x), 0, 0
        assert x.shape[1] == len(VITALS.channels)
    names = list(variants)
    batch = np.stack([x, *variants.values()]).astype(np.float32)
    risk = run(batch)[output][:, column]
    contributions = [(name, float(risk[0] - risk[i + 1])) for i, name in enumerate(names)]
    contributions.sort(key=lambda item: -item[1])
    return [
        {"signal": name, "contribution": round(value, 3)}
        for name, value in contributions[:top]
        if value > 0.005
    ]
