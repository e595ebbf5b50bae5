"""``Observation.checked`` builds without validating: it must equal the validated one."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
import pytest

from streams.schemas.codes import CATALOGUE
from streams.schemas.observation import Format, Kind, Observation

FIELDS = {
    "patient_id": "p-001",
    "kind": Kind.VITAL,
    "code": "8867-4",
    "value": 72.0,
    "unit": "/min",
    "effective_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
    "received_at": datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC),
    "source": "watch-42",
    "event_id": "e-1",
    "format": Format.NATIVE,
    "utc_offset_min": 60,  # the normaliser always passes it (None when unknown)
}


def test_checked_equals_validated() -> None:
    checked = Observation.checked(**FIELDS)
    validated = Observation(**FIELDS)
    assert checked == validated
    assert hash(checked) == hash(validated)  # frozen: usable as a key like the validated one
    assert checked.model_dump() == validated.model_dump()
    assert checked.model_dump_json() == validated.model_dump_json()
    assert checked.model_fields_set == validated.model_fields_set
    assert repr(checked) == repr(validated)
    assert Observation.model_validate_json(checked.model_dump_json()) == validated


def test_checked_is_frozen_and_copies_like_a_model() -> None:
    checked = Observation.checked(**FIELDS)
    with pytest.raises(ValueError, match="frozen"):
        checked.value = 1.0  # type: ignore[misc]
    copy = checked.model_copy(update={"value": 80.0})
    assert copy.value == 80.0 and checked.value == 72.0
    assert orjson.loads(checked.model_dump_json())["effective_at"] == "2026-11-24T10:00:00Z"


def test_catalogue_codes_and_units_meet_the_observation_constraints() -> None:
    """The checked path trusts canonical catalogue codes and units without validating."""
    pattern = re.compile(Observation.model_fields["code"].metadata[0].pattern)
    for spec in CATALOGUE.values():
        code = spec.canonical_code or spec.code
        assert pattern.fullmatch(code), code
        assert Observation(**{**FIELDS, "code": code, "unit": spec.unit, "kind": spec.kind})
