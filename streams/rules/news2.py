"""NEWS2, exactly as the Royal College of Physicians' 2017 chart.

Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
assessment of acute-illness severity in the NHS. Updated report of a working party.
London: RCP, 2017 (chart 1, "The NEWS scoring system", and chart 2, escalation).

Charted parameters are whole numbers (temperature one decimal); device values are rounded
half-up to that resolution before scoring, so 20.5/min scores as 21/min.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

VERSION = "news2-rcp-2017"


class Band(StrEnum):
    """Clinical risk band (RCP chart 2) by aggregate score."""

    ZERO = "0"
    LOW = "1-4"
    MEDIUM = "5-6"
    HIGH = "7+"


@dataclass(frozen=True, slots=True)
class Vitals:
    """The latest value of each NEWS2 parameter; None when not measured."""

    respiratory_rate: float | None = None  # /min
    spo2: float | None = None  # %
    on_oxygen: bool | None = None  # supplemental oxygen (any flow, or FiO2 > 21 %)
    systolic_bp: float | None = None  # mm[Hg]
    pulse: float | None = None  # /min
    consciousness: int | None = None  # ACVPU ordinal: 0 alert, 1..4 new confusion..unresponsive
    temperature: float | None = None  # Cel


@dataclass(frozen=True, slots=True)
class News2:
    total: int
    parameters: dict[str, int]  # score of each parameter that was measured
    missing: tuple[str, ...]  # parameters not measured (their score counts as 0)
    band: Band
    single_parameter_3: bool  # any one parameter scoring 3: urgent ward-based response
    spo2_scale: int
    version: str = VERSION

    @property
    def complete(self) -> bool:
        return not self.missing


def _whole(value: float) -> int:
    """Round half up to a whole number (the chart's resolution); 1e-9 absorbs float error."""
    return math.floor(value + 0.5 + 1e-9)


def respiratory_rate_score(rate: float) -> int:
    r = _whole(rate)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def spo2_scale1_score(spo2: float) -> int:
    s = _whole(spo2)
    if s <= 91:
        return 3
    if s <= 93:
        return 2
    if s <= 95:
        return 1
    return 0


def spo2_scale2_score(spo2: float, on_oxygen: bool) -> int:
    """Scale 2, for patients with hypercapnic respiratory failure (target 88-92 %)."""
    s = _whole(spo2)
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0  # 88-92 %, or >= 93 % on air
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def air_or_oxygen_score(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def systolic_bp_score(systolic: float) -> int:
    s = _whole(systolic)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def pulse_score(pulse: float) -> int:
    p = _whole(pulse)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def consciousness_score(level: int) -> int:
    """Alert scores 0; new confusion, voice, pain or unresponsive score 3."""
    return 0 if level == 0 else 3


def temperature_score(celsius: float) -> int:
    t = _whole(celsius * 10)  # tenths of a degree
    if t <= 350:
        return 3
    if t <= 360:
        return 1
    if t <= 380:
        return 0
    if t <= 390:
        return 1
    return 2


def band(total: int) -> Band:
    if total == 0:
        return Band.ZERO
    if total <= 4:
        return Band.LOW
    if total <= 6:
        return Band.MEDIUM
    return Band.HIGH


def news2_score(vitals: Vitals, *, spo2_scale: int = 1) -> News2:
    """Aggregate NEWS2 of the latest vitals; scale 2 only for patients prescribed it."""
    if spo2_scale not in (1, 2):
        msg = f"SpO2 scale must be 1 or 2, not {spo2_scale}"
        raise ValueError(msg)
    scores: dict[str, int] = {}
    missing: list[str] = []

    def score(name: str, value: Any, fn: Callable[[Any], int]) -> None:
        if value is None:
            missing.append(name)
        else:
            scores[name] = fn(value)

    score("respiratory_rate", vitals.respiratory_rate, respiratory_rate_score)
    if vitals.spo2 is None:
        missing.append("spo2")
    elif spo2_scale == 2:
        scores["spo2"] = spo2_scale2_score(vitals.spo2, bool(vitals.on_oxygen))
    else:
        scores["spo2"] = spo2_scale1_score(vitals.spo2)
    score("air_or_oxygen", vitals.on_oxygen, air_or_oxygen_score)
    score("systolic_bp", vitals.systolic_bp, systolic_bp_score)
    score("pulse", vitals.pulse, pulse_score)
    score("consciousness", vitals.consciousness, consciousness_score)
    score("temperature", vitals.temperature, temperature_score)
    total = sum(scores.values())
    return News2(
        total=total,
        parameters=scores,
        missing=tuple(missing),
        band=band(total),
        single_parameter_3=any(v == 3 for v in scores.values()),
        spo2_scale=spo2_scale,
    )
