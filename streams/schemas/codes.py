"""The LOINC codes Bedside understands: kind, canonical unit, accepted units, plausible range.

Data, not scattered constants. A code sent in another unit is converted with ``factor`` and
``offset`` (canonical = value * factor + offset); a molar glucose code is mapped to its
mass-concentration twin so that every glucose value is in mg/dL under one code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .observation import Kind

GLUCOSE_MMOL_TO_MGDL = 18.016
CARBS_CODE = "9059-7"  # LOINC: carbohydrate intake, estimated (g)
INSULIN_CODE = "insulin-given"  # Bedside's own code: insulin units given (bolus)


@dataclass(frozen=True, slots=True)
class Conversion:
    factor: float = 1.0
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset


SAME = Conversion()


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """What Bedside knows about one LOINC code."""

    code: str
    name: str
    kind: Kind
    unit: str
    low: float | None = None  # plausible range, canonical unit, inclusive
    high: float | None = None
    units: dict[str, Conversion] = field(default_factory=dict)  # UCUM unit -> canonical
    canonical_code: str | None = None  # report under this code instead (molar -> mass glucose)

    def convert(self, value: float, unit: str) -> float | None:
        """Value in the canonical unit, or None if ``unit`` is not accepted for this code."""
        if unit == self.unit:
            return value
        conversion = self.units.get(unit)
        return None if conversion is None else conversion.apply(value)


_MGDL_FROM_MMOL = {"mmol/L": Conversion(GLUCOSE_MMOL_TO_MGDL)}
_MMOL_TO_MGDL_ONLY = {"mmol/L": Conversion(GLUCOSE_MMOL_TO_MGDL), "mg/dL": SAME}
_GLUCOSE_RANGE = (20.0, 600.0)

#: AVPU/ACVPU level of consciousness as an ordinal (NEWS2 scores 0 for Alert, 3 otherwise).
CONSCIOUSNESS_LEVELS = {"alert": 0, "confusion": 1, "voice": 2, "pain": 3, "unresponsive": 4}
CONSCIOUSNESS_ALIASES = {
    "a": 0,
    "c": 1,
    "v": 2,
    "p": 3,
    "u": 4,
    "new confusion": 1,
    "confused": 1,
    "verbal": 2,
    "responds to voice": 2,
    "responds to pain": 3,
}

CATALOGUE: dict[str, CodeSpec] = {
    spec.code: spec
    for spec in (
        # vital signs
        CodeSpec("8867-4", "heart_rate", Kind.VITAL, "/min", 20, 300),
        CodeSpec("9279-1", "respiratory_rate", Kind.VITAL, "/min", 2, 80),
        CodeSpec("2708-6", "spo2", Kind.VITAL, "%", 50, 100),
        CodeSpec("59408-5", "spo2", Kind.VITAL, "%", 50, 100),
        CodeSpec(
            "8310-5",
            "body_temperature",
            Kind.VITAL,
            "Cel",
            25,
            45,
            {"[degF]": Conversion(5 / 9, -32 * 5 / 9)},
        ),
        CodeSpec("8480-6", "systolic_bp", Kind.VITAL, "mm[Hg]", 40, 300),
        CodeSpec("8462-4", "diastolic_bp", Kind.VITAL, "mm[Hg]", 20, 200),
        # ACVPU as an ordinal 0..4 (see CONSCIOUSNESS_LEVELS)
        CodeSpec("67775-7", "consciousness", Kind.VITAL, "{score}", 0, 4),
        # supplemental oxygen: flow (0 = room air) or inspired fraction (21 % = room air)
        CodeSpec("3151-8", "o2_flow", Kind.VITAL, "L/min", 0, 80),
        CodeSpec("3150-0", "fio2", Kind.VITAL, "%", 21, 100),
        # glucose, canonical mg/dL
        CodeSpec("99504-3", "cgm_glucose", Kind.GLUCOSE, "mg/dL", *_GLUCOSE_RANGE, _MGDL_FROM_MMOL),
        CodeSpec(
            "105272-9",
            "cgm_glucose",
            Kind.GLUCOSE,
            "mg/dL",
            *_GLUCOSE_RANGE,
            _MMOL_TO_MGDL_ONLY,
            canonical_code="99504-3",
        ),
        CodeSpec(
            "2339-0", "blood_glucose", Kind.GLUCOSE, "mg/dL", *_GLUCOSE_RANGE, _MGDL_FROM_MMOL
        ),
        CodeSpec(
            "15074-8",
            "blood_glucose",
            Kind.GLUCOSE,
            "mg/dL",
            *_GLUCOSE_RANGE,
            _MMOL_TO_MGDL_ONLY,
            canonical_code="2339-0",
        ),
        CodeSpec(
            "41653-7", "capillary_glucose", Kind.GLUCOSE, "mg/dL", *_GLUCOSE_RANGE, _MGDL_FROM_MMOL
        ),
        CodeSpec(
            "14743-9",
            "capillary_glucose",
            Kind.GLUCOSE,
            "mg/dL",
            *_GLUCOSE_RANGE,
            _MMOL_TO_MGDL_ONLY,
            canonical_code="41653-7",
        ),
        # treatments (Nightscout): carbohydrates eaten and insulin given, kept as their
        # latest value; no LOINC code exists for a dose given (FHIR carries it as a
        # MedicationAdministration), so insulin has Bedside's own code
        CodeSpec("9059-7", "carbohydrate_intake", Kind.LAB, "g", 0, 500),
        CodeSpec(INSULIN_CODE, "insulin_given", Kind.LAB, "[IU]", 0, 100),
        # laboratory
        CodeSpec("4548-4", "hba1c", Kind.LAB, "%", 3, 20),
        CodeSpec(
            "2160-0", "creatinine", Kind.LAB, "mg/dL", 0.1, 30, {"umol/L": Conversion(1 / 88.42)}
        ),
        CodeSpec("2823-3", "potassium", Kind.LAB, "mmol/L", 1.5, 10, {"meq/L": SAME}),
        CodeSpec(
            "2524-7", "lactate", Kind.LAB, "mmol/L", 0.1, 30, {"mg/dL": Conversion(1 / 9.008)}
        ),
    )
}

#: Blood-pressure panel: its components are split into separate observations.
BP_PANEL = "85354-9"

#: Free-text units seen in the wild -> UCUM. Only used when no UCUM code was sent.
UNIT_ALIASES: dict[str, str] = {
    "bpm": "/min",
    "beats/min": "/min",
    "beats/minute": "/min",
    "{beats}/min": "/min",
    "1/min": "/min",
    "/min": "/min",
    "breaths/min": "/min",
    "{breaths}/min": "/min",
    "rpm": "/min",
    "%": "%",
    "percent": "%",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "cel": "Cel",
    "°c": "Cel",
    "c": "Cel",
    "degc": "Cel",
    "[degf]": "[degF]",
    "°f": "[degF]",
    "f": "[degF]",
    "degf": "[degF]",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "meq/l": "meq/L",
    "l/min": "L/min",
    "{score}": "{score}",
}


@lru_cache(maxsize=1024)  # devices repeat a few spellings; bounded for the odd ones
def ucum(unit: str) -> str:
    """The UCUM spelling of a unit: UCUM codes pass through, known free text is mapped."""
    return UNIT_ALIASES.get(unit.strip().lower(), unit.strip())
