"""Whatever arrives, decoding ends in observations or problems with a reason, never a raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.decode import decode_record
from streams.ingest.problems import Reason
from streams.schemas.observation import Kind

from .conftest import NOW, UCUM

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

VALID = [
    {
        "patient_id": "syn-1",
        "code": "8867-4",
        "value": 72,
        "unit": "/min",
        "effective_at": "2026-11-24T11:55:00Z",
    },
    {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/syn-2"},
        "effectiveDateTime": "2026-11-24T11:50:00Z",
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]},
                    "subject": {"reference": "Patient/syn-3"},
                    "effectiveDateTime": "2026-11-24T11:50:00Z",
                    "valueQuantity": {"value": 110, "system": UCUM, "code": "mg/dL"},
                }
            }
        ],
    },
    [{"type": "sgv", "sgv": 142, "date": 1795520400000, "device": "xDrip"}],
]


def _check(raw: bytes, key: bytes | None = b"syn-k", kind: Kind | None = None) -> None:
    result = decode_record(raw, received_at=NOW, topic_kind=kind, key=key)
    assert result.observations or result.problems
    assert all(p.reason is not Reason.INTERNAL for p in result.problems), result.problems
    assert all(p.message for p in result.problems)


@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@given(JSON, st.sampled_from([None, *Kind]))
def test_arbitrary_json(document: Any, kind: Kind | None) -> None:
    _check(orjson.dumps(document), kind=kind)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


@st.composite
def mutated(draw: Callable[..., Any]) -> Any:
    document = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        document = _replace(document, path, draw(JSON))
    return document


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from([None, b"syn-k"]))
def test_mutated_valid_documents(document: Any, key: bytes | None) -> None:
    _check(orjson.dumps(document), key=key)
