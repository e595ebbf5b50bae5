from collections.abc import Callable
from typing import Any

import orjson
import pytest

from streams.ingest.decode import decode_record
from streams.ingest.native import native_record
from streams.ingest.problems import DecodeResult, Reason
from streams.schemas.observation import Format, Kind

from .conftest import NOW

Decode = Callable[..., DecodeResult]
Make = Callable[..., dict[str, Any]]


def test_one_observation_is_normalised(decode: Decode, native: Make) -> None:
    result = decode(native(unit="bpm", event_id="dev-42"), topic_kind=Kind.VITAL)
    assert not result.problems
    [obs] = result.observations
    assert (obs.patient_id, obs.kind, obs.code, obs.value, obs.unit) == (
        "syn-001",
        Kind.VITAL,
        "8867-4",
        72.0,
        "/min",
    )
    assert obs.effective_at.isoformat() == "2026-11-24T11:55:00+00:00"
    assert obs.event_id == "dev-42" and obs.format is Format.NATIVE and obs.source == "watch-1"


def test_a_list_and_the_stable_event_id(decode: Decode, native: Make) -> None:
    docs = [native(), native(code="9279-1", value=18)]
    first, second = decode(docs).observations, decode(docs).observations
    assert [o.code for o in first] == ["8867-4", "9279-1"]
    assert [o.event_id for o in first] == [o.event_id for o in second]
    assert first[0].event_id != first[1].event_id


def test_mmol_glucose_becomes_mg_dl_under_the_mass_code(decode: Decode, native: Make) -> None:
    [obs] = decode(native(code="105272-9", value=3.5, unit="mmol/L")).observations
    assert obs.code == "99504-3" and obs.unit == "mg/dL" and obs.kind is Kind.GLUCOSE
    assert obs.value == pytest.approx(3.5 * 18.016)


def test_fahrenheit_becomes_celsius(decode: Decode, native: Make) -> None:
    [obs] = decode(native(code="8310-5", value=98.6, unit="[degF]")).observations
    assert obs.unit == "Cel" and obs.value == pytest.approx(37.0)


@pytest.mark.parametrize(
    ("value", "expected"), [("A", 0.0), ("new confusion", 1.0), ("Unresponsive", 4.0), (2, 2.0)]
)
def test_acvpu_levels(decode: Decode, native: Make, value: object, expected: float) -> None:
    [obs] = decode(native(code="67775-7", value=value, unit=None)).observations
    assert obs.value == expected and obs.unit == "{score}"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"effective_at": "2026-11-24T11:55:00"}, Reason.TIME),
        ({"effective_at": "2026-11-24T13:00:00Z"}, Reason.TIME),  # an hour in the future
        ({"value": 720}, Reason.IMPLAUSIBLE),
        ({"value": True}, Reason.SCHEMA),
        ({"value": "72"}, Reason.SCHEMA),
        ({"unit": "kg"}, Reason.UNIT),
        ({"unit": None}, Reason.UNIT),
        ({"patient_id": ""}, Reason.PATIENT),
        ({"patient_id": "a\nb"}, Reason.PATIENT),
        ({"colour": "red"}, Reason.SCHEMA),
        ({"code": "1234-5"}, Reason.UNKNOWN_CODE),
    ],
)
def test_bad_native_observations_name_the_reason(
    decode: Decode, native: Make, overrides: dict[str, Any], reason: Reason
) -> None:
    result = decode(native(**overrides), topic_kind=Kind.VITAL)
    assert not result.observations
    assert [p.reason for p in result.problems] == [reason], result.problems


def test_other_loinc_passes_through_as_a_lab_on_the_labs_topic(
    decode: Decode, native: Make
) -> None:
    [obs] = decode(
        native(code="2951-2", value=140, unit="mmol/L"), topic_kind=Kind.LAB
    ).observations
    assert (obs.kind, obs.code, obs.unit, obs.value) == (Kind.LAB, "2951-2", "mmol/L", 140.0)


def test_one_bad_item_does_not_sink_the_rest(decode: Decode, native: Make) -> None:
    result = decode([native(), native(value=-5), "nope"])
    assert len(result.observations) == 1
    assert [(p.reason, p.pointer) for p in result.problems] == [
        (Reason.IMPLAUSIBLE, "/1"),
        (Reason.SCHEMA, "/2"),
    ]


@pytest.mark.parametrize(
    "written",
    ["2026-11-24T12:00:00+02:00", "2026-11-24T10:00:00+00:00", "2026-11-24T05:30:00-04:30"],
)
def test_a_republished_observation_decodes_to_itself(written: str) -> None:
    """The gateway and the re-router publish normalised observations as native records: the
    stream must decode them to the same observation, the offset their time was written in
    included (once refused as an unknown field, which dead-lettered every gateway post)."""
    fhir = {
        "resourceType": "Observation", "status": "final", "id": "obs-1",
        "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]},
        "subject": {"reference": "Patient/p-7"}, "effectiveDateTime": written,
        "valueQuantity": {"value": 120, "unit": "mg/dL"},
    }  # fmt: skip
    [first] = decode_record(orjson.dumps(fhir), received_at=NOW, key=None).observations
    again = decode_record(native_record(first), received_at=NOW, key=None)
    assert not again.problems, again.problems
    [second] = again.observations
    assert second.utc_offset_min == first.utc_offset_min
    assert second.effective_at == first.effective_at and second.event_id == first.event_id
    assert (second.code, second.value, second.unit, second.patient_id) == (
        first.code, first.value, first.unit, first.patient_id,
    )  # fmt: skip
