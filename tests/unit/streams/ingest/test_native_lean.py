"""The lean native path (no pydantic for well-formed device objects) decides exactly as the
validating path: same observations, same problems, for good and bad documents alike."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from streams.ingest.native import decode_native
from streams.ingest.problems import DecodeResult
from streams.schemas.observation import Kind

from .conftest import NATIVE, NOW

BASE: dict[str, Any] = {**NATIVE, "event_id": "e-1"}

# per field: values that are fine, odd-but-valid or wrong (the validating path says which)
VARIANTS: dict[str, list[Any]] = {
    "patient_id": ["p", "x" * 128, "x" * 129, "", 7, None, "a\x00b", "tab\there", "ünïcode"],
    "code": ["99504-3", "105272-9", "59408-5", "67775-7", "2345-7", "nope", "", 5, None],
    "value": [72, 72.5, 0, -1, 1e9, True, "72", None, float("inf"), 39, 3.5],
    "unit": ["/min", "bpm", "mg/dL", "mmol/L", "%", "", None, 5, "u" * 65, "degF"],
    "effective_at": [
        "2026-11-24T11:55:00Z",
        "2026-11-24T11:55:00.123456+01:00",
        "2026-11-24T11:55:00",  # no zone
        "2026-11-24 11:55:00Z",
        "2026-11-24T12:30:00Z",  # in the future
        "2026-11-24",
        "2026-13-24T11:55:00Z",
        "yesterday",
        1_764_000_000,
        None,
    ],
    "source": ["s", "", "x" * 257, None, 3, "bad\nline"],
    "event_id": ["e", "", "x" * 257, None, 12],
}


def _decode(document: Any, *, lean: bool, topic_kind: Kind | None) -> DecodeResult:
    result = DecodeResult(format=None)
    document = orjson.loads(orjson.dumps(document))
    decode_native(document, received_at=NOW, topic_kind=topic_kind, result=result, lean=lean)
    return result


def _same(document: Any, topic_kind: Kind | None = Kind.VITAL) -> None:
    lean = _decode(document, lean=True, topic_kind=topic_kind)
    full = _decode(document, lean=False, topic_kind=topic_kind)
    assert lean.observations == full.observations, document
    assert lean.problems == full.problems, document


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, values in VARIANTS.items() for v in values if v != float("inf")],
)
def test_one_field_varied(field: str, value: Any) -> None:
    _same({**BASE, field: value})


def test_missing_and_extra_fields() -> None:
    for field in BASE:
        _same({k: v for k, v in BASE.items() if k != field})
    _same({**BASE, "extra": 1})
    _same({**BASE, "format": "native", "kind": "vital", "received_at": "2026-11-24T11:56:00Z"})


def test_pairs_of_fields_varied_on_each_topic() -> None:
    fields = ["code", "value", "unit", "effective_at"]
    for a, b in itertools.combinations(fields, 2):
        for va, vb in itertools.product(VARIANTS[a], VARIANTS[b]):
            if float("inf") in (va, vb):
                continue
            for kind in (Kind.VITAL, Kind.GLUCOSE, Kind.LAB, None):
                _same({**BASE, a: va, b: vb}, kind)


def test_the_lean_path_takes_well_formed_objects() -> None:
    from streams.ingest import native

    assert native._lean(dict(BASE), "") is not None
    assert native._lean({**BASE, "value": True}, "") is None
    assert native._lean({**BASE, "effective_at": "2026-11-24T11:55:00"}, "") is None
