from collections.abc import Callable
from typing import Any

import orjson
import pytest

from streams.ingest.problems import DecodeResult, Reason
from streams.schemas.observation import Format, Kind

from .conftest import LOINC, UCUM

Decode = Callable[..., DecodeResult]
Make = Callable[..., dict[str, Any]]


def test_observation_with_ucum_code_preferred_over_free_text(
    decode: Decode, fhir_obs: Make
) -> None:
    doc = fhir_obs(
        valueQuantity={"value": 88, "unit": "beats per minute", "system": UCUM, "code": "/min"}
    )
    [obs] = decode(doc).observations
    assert (obs.patient_id, obs.code, obs.value, obs.unit, obs.format) == (
        "syn-002",
        "8867-4",
        88.0,
        "/min",
        Format.FHIR,
    )
    assert obs.effective_at.isoformat() == "2026-11-24T10:50:00+00:00"
    assert obs.event_id == "obs-1"


def test_free_text_unit_is_used_when_no_code(decode: Decode, fhir_obs: Make) -> None:
    [obs] = decode(
        fhir_obs(valueQuantity={"value": 37.5, "unit": "°C"}, code="8310-5")
    ).observations
    assert obs.unit == "Cel" and obs.value == 37.5


def test_blood_pressure_panel_becomes_two_observations(decode: Decode, fhir_obs: Make) -> None:
    doc = fhir_obs(
        code="85354-9",
        value=None,
        id="bp-7",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 128, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 82, "unit": "mmHg"},
            },
        ],
    )
    result = decode(doc)
    assert not result.problems
    assert [(o.code, o.value, o.unit, o.event_id) for o in result.observations] == [
        ("8480-6", 128.0, "mm[Hg]", "bp-7/8480-6"),
        ("8462-4", 82.0, "mm[Hg]", "bp-7/8462-4"),
    ]


def test_spo2_with_several_codings_picks_the_known_loinc(decode: Decode, fhir_obs: Make) -> None:
    doc = fhir_obs(code="x", unit_code="%", value=94)
    doc["code"] = {
        "coding": [
            {"system": "http://snomed.info/sct", "code": "431314004"},
            {"system": LOINC, "code": "0000-0"},
            {"system": LOINC, "code": "59408-5", "display": "SpO2 by pulse oximetry"},
        ]
    }
    [obs] = decode(doc).observations
    assert (obs.code, obs.value, obs.unit) == ("59408-5", 94.0, "%")


def test_mmol_cgm_glucose(decode: Decode, fhir_obs: Make) -> None:
    [obs] = decode(fhir_obs(code="105272-9", value=4.2, unit_code="mmol/L")).observations
    assert obs.code == "99504-3" and obs.kind is Kind.GLUCOSE
    assert obs.value == pytest.approx(4.2 * 18.016)


@pytest.mark.parametrize("field", ["effectiveInstant", "effectivePeriod"])
def test_other_effective_fields(decode: Decode, fhir_obs: Make, field: str) -> None:
    doc = fhir_obs()
    del doc["effectiveDateTime"]
    when = "2026-11-24T09:00:00Z"
    doc[field] = {"start": when} if field == "effectivePeriod" else when
    [obs] = decode(doc).observations
    assert obs.effective_at.isoformat() == "2026-11-24T09:00:00+00:00"


@pytest.mark.parametrize(
    ("when", "expected"),
    [("2026-11-20", "2026-11-20T00:00:00+00:00"), ("2026-10", "2026-10-01T00:00:00+00:00")],
)
def test_date_only_and_partial_dates_are_accepted_for_labs(
    decode: Decode, fhir_obs: Make, when: str, expected: str
) -> None:
    [obs] = decode(
        fhir_obs(code="4548-4", value=7.1, unit_code="%", effectiveDateTime=when)
    ).observations
    assert obs.kind is Kind.LAB and obs.effective_at.isoformat() == expected


def test_date_only_is_refused_for_vitals(decode: Decode, fhir_obs: Make) -> None:
    result = decode(fhir_obs(effectiveDateTime="2026-11-24"))
    assert [p.reason for p in result.problems] == [Reason.TIME]
    assert "too imprecise" in result.problems[0].message


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_refused_status_is_dead_lettered_with_that_reason(
    decode: Decode, fhir_obs: Make, status: str
) -> None:
    result = decode(fhir_obs(status=status))
    assert not result.observations
    assert result.problems[0].reason is Reason.STATUS and status in result.problems[0].message


def test_bundle_resolves_urn_uuid_patients_and_keeps_good_entries(
    decode: Decode, fhir_obs: Make, bundle: Make
) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"value": "mrn-77"}]}
    good = fhir_obs(subject={"reference": "urn:uuid:0"}, id="a")
    bad = fhir_obs(code="8867-4", value=999, id="b")
    result = decode(bundle(patient, good, bad))
    assert [(o.patient_id, o.event_id) for o in result.observations] == [("mrn-77", "a")]
    assert [(p.reason, p.pointer) for p in result.problems] == [
        (Reason.IMPLAUSIBLE, "/entry/2/resource")
    ]


@pytest.mark.parametrize("kind", ["transaction", "batch", "collection", "searchset"])
def test_bundle_types(decode: Decode, fhir_obs: Make, bundle: Make, kind: str) -> None:
    assert len(decode(bundle(fhir_obs(), type=kind)).observations) == 1


def test_bundle_limits_and_unsupported_types(decode: Decode, fhir_obs: Make, bundle: Make) -> None:
    big = bundle(*[fhir_obs(id=str(i)) for i in range(5)])
    assert decode(big, limits=_limits(entries=4)).problems[0].reason is Reason.TOO_MANY_ENTRIES
    assert decode(bundle(fhir_obs(), type="document")).problems[0].reason is Reason.UNSUPPORTED
    other = {"resourceType": "Condition", "id": "c"}
    assert decode(bundle(other)).problems[0].reason is Reason.UNSUPPORTED
    assert decode({"resourceType": "Patient"}).problems[0].reason is Reason.UNSUPPORTED


def _limits(entries: int) -> object:
    from streams.ingest.decode import IngestLimits

    return IngestLimits(max_entries=entries)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"valueQuantity": None, "dataAbsentReason": {"text": "asked but declined"}},
            Reason.NO_VALUE,
        ),
        ({"subject": None}, Reason.PATIENT),
        ({"subject": {"reference": "Group/ward-3"}}, Reason.PATIENT),
        ({"effectiveDateTime": "2026-11-24T11:50:00"}, Reason.SCHEMA),  # FHIR needs a zone
        ({"status": "bogus"}, Reason.SCHEMA),
        ({"valueQuantity": {"value": 72, "system": UCUM, "code": "kg"}}, Reason.UNIT),
    ],
)
def test_bad_fhir_observations(
    decode: Decode, fhir_obs: Make, overrides: dict[str, Any], reason: Reason
) -> None:
    doc = {k: v for k, v in {**fhir_obs(), **overrides}.items() if v is not None}
    result = decode(doc)
    assert not result.observations
    assert result.problems[0].reason is reason, result.problems


def test_absolute_patient_reference_and_identifier(decode: Decode, fhir_obs: Make) -> None:
    doc = fhir_obs(subject={"reference": "https://ehr.example/fhir/Patient/syn-9"})
    assert decode(doc).observations[0].patient_id == "syn-9"
    doc = fhir_obs(subject={"identifier": {"system": "urn:mrn", "value": "mrn-5"}})
    assert decode(doc).observations[0].patient_id == "mrn-5"


def test_acvpu_as_codeable_concept(decode: Decode, fhir_obs: Make) -> None:
    doc = fhir_obs(code="67775-7", value=None, valueCodeableConcept={"text": "Voice"})
    [obs] = decode(doc).observations
    assert (obs.value, obs.unit) == (2.0, "{score}")


@pytest.mark.parametrize("depth", [70, 400, 5000])
def test_deep_nesting_is_a_schema_problem_not_a_bug(fhir_obs: Make, depth: int) -> None:
    # a recursive extension 400 deep was reported as `internal` with a 134 KB traceback
    from streams.ingest.decode import decode_record

    from .conftest import NOW

    inner = '{"url": "http://x", "valueString": "v"}'
    ext = '{"url": "http://x", "extension": [' * depth + inner + "]}" * depth
    document = orjson.dumps(fhir_obs(extension=["EXT"])).decode().replace('"EXT"', ext)
    result = decode_record(document.encode(), received_at=NOW)
    assert not result.observations
    # beyond orjson's own depth limit the JSON itself is refused: a clear 400 either way
    assert [p.reason for p in result.problems] in ([Reason.SCHEMA], [Reason.MALFORMED_JSON])
    assert Reason.INTERNAL not in [p.reason for p in result.problems]
