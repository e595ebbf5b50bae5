"""Factories of synthetic documents in each ingest format (no real patients)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.ingest.decode import decode_record
from streams.ingest.problems import DecodeResult
from streams.schemas.observation import Kind

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture
def decode() -> Callable[..., DecodeResult]:
    """decode(document_or_bytes, topic_kind=..., key=...) at a fixed arrival time."""

    def run(
        document: Any, *, topic_kind: Kind | None = None, key: bytes | None = None, **kwargs: Any
    ) -> DecodeResult:
        raw = document if isinstance(document, bytes) else orjson.dumps(document)
        return decode_record(raw, received_at=NOW, topic_kind=topic_kind, key=key, **kwargs)

    return run


#: a well-formed native device object (heart rate)
NATIVE: dict[str, Any] = {
    "patient_id": "syn-001",
    "code": "8867-4",
    "value": 72,
    "unit": "/min",
    "effective_at": "2026-11-24T11:55:00Z",
    "source": "watch-1",
}


@pytest.fixture
def native() -> Callable[..., dict[str, Any]]:
    def make(**overrides: Any) -> dict[str, Any]:
        doc = {**NATIVE, **overrides}
        return {k: v for k, v in doc.items() if v is not None}

    return make


@pytest.fixture
def fhir_obs() -> Callable[..., dict[str, Any]]:
    def make(
        code: str = "8867-4",
        value: float | None = 72,
        unit_code: str | None = "/min",
        **overrides: Any,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": "Patient/syn-002"},
            "effectiveDateTime": "2026-11-24T11:50:00+01:00",
        }
        if value is not None:
            quantity: dict[str, Any] = {"value": value}
            if unit_code:
                quantity.update(system=UCUM, code=unit_code)
            doc["valueQuantity"] = quantity
        doc.update(overrides)
        return doc

    return make


@pytest.fixture
def bundle() -> Callable[..., dict[str, Any]]:
    def make(*resources: dict[str, Any], type: str = "transaction") -> dict[str, Any]:  # noqa: A002
        return {
            "resourceType": "Bundle",
            "type": type,
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{i}",
                    "resource": r,
                    "request": {"method": "POST", "url": r["resourceType"]},
                }
                for i, r in enumerate(resources)
            ],
        }

    return make
