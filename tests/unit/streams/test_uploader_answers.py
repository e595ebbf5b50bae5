"""What the gateway answers FHIR clients and Nightscout followers, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from factories import cgm
from fhir.resources.capabilitystatement import CapabilityStatement

from streams.http.fhir_rest import capability_statement, fhir_id
from streams.http.nightscout import direction, entries_of, entry_of
from streams.ingest.decode import decode_record
from streams.schemas.codes import CARBS_CODE, INSULIN_CODE

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_the_capability_statement_is_valid_fhir_r4() -> None:
    statement = capability_statement()
    CapabilityStatement.model_validate(statement)  # raises on anything invalid
    [rest] = statement["rest"]
    assert [r["type"] for r in rest["resource"]] == ["Observation"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    assert CARBS_CODE in rest["documentation"] and INSULIN_CODE in rest["documentation"]


def test_an_observation_id_is_its_event_id_or_a_stable_hash() -> None:
    plain = cgm(0, 100)
    assert fhir_id(plain) == plain.event_id
    odd = plain.model_copy(update={"event_id": "urn:uuid:1 2/3"})
    assert fhir_id(odd) == fhir_id(odd) and len(fhir_id(odd)) == 32
    assert fhir_id(odd) != fhir_id(plain.model_copy(update={"event_id": "urn:uuid:1 2/4"}))


def test_a_bundle_says_which_observations_each_entry_gave() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}},
            *[
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                        "subject": {"reference": "Patient/syn-b"},
                        "effectiveDateTime": f"2026-11-24T11:5{i}:00Z",
                        "valueQuantity": {"value": 70 + i, "code": "/min"},
                    }
                }
                for i in range(3)
            ],
        ],
    }
    result = decode_record(orjson.dumps(bundle), received_at=NOW)
    assert not result.problems
    assert result.entries == [(1, 0, 1), (2, 1, 2), (3, 2, 3)]


def test_nightscout_directions_follow_its_thresholds() -> None:
    assert [direction(r) for r in (3.5, 2.5, 1.5, 0, -1.5, -2.5, -3.5, None)] == [
        "DoubleUp",
        "SingleUp",
        "FortyFiveUp",
        "Flat",
        "FortyFiveDown",
        "SingleDown",
        "DoubleDown",
        "NONE",
    ]


def test_entries_read_back_newest_first_with_their_direction() -> None:
    t0 = 1_795_000_000_000
    points = [[t0 + 300_000 * i, 120.0 - 6 * i] for i in range(4)]  # -1.2 mg/dL/min
    newest, previous = entries_of(points, "sgv", 2)
    assert (newest["date"], newest["sgv"]) == (t0 + 900_000, 102)
    assert newest["direction"] == "FortyFiveDown"
    assert newest["dateString"].endswith("Z") and newest["type"] == "sgv"
    assert previous["date"] == t0 + 600_000
    [only] = entries_of(points[:1], "sgv", 5)
    assert only["direction"] == "NONE"  # nothing to take a rate from


def test_a_posted_entry_is_answered_as_nightscout_stores_it() -> None:
    observation = cgm(0, 142)
    entry = entry_of(observation)
    assert (entry["type"], entry["sgv"], entry["_id"]) == ("sgv", 142, observation.event_id)
    assert entry["date"] == int(observation.effective_at.timestamp() * 1000)
