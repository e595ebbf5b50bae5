"""Factories of synthetic observations for unit tests (no real patients)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.schemas.observation import Format, Kind, Observation, stable_event_id

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
CGM = "99504-3"


def observation(
    patient: str,
    kind: Kind,
    code: str,
    minutes: float,
    value: float,
    *,
    t0: datetime = T0,
    unit: str = "x",
) -> Observation:
    """One observation ``minutes`` after ``t0`` with a stable event id."""
    at = t0 + timedelta(minutes=minutes)
    return Observation(
        patient_id=patient,
        kind=kind,
        code=code,
        value=value,
        unit=unit,
        effective_at=at,
        received_at=at,
        source="t",
        event_id=stable_event_id(patient, code, at, value, "t"),
        format=Format.NATIVE,
    )


def cgm(minutes: float, value: float, patient: str = "syn-p1") -> Observation:
    return observation(patient, Kind.GLUCOSE, CGM, minutes, value, unit="mg/dL")


def vital(code: str, minutes: float, value: float, patient: str = "syn-p1") -> Observation:
    return observation(patient, Kind.VITAL, code, minutes, value)
