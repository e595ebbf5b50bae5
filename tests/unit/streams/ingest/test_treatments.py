"""Nightscout treatments: insulin and carbohydrates become observations; the rest is not kept."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.ingest.nightscout import decode_treatments
from streams.ingest.problems import DecodeResult, Reason
from streams.schemas.codes import CARBS_CODE, INSULIN_CODE
from streams.schemas.observation import Kind

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def decode(document: object) -> tuple[DecodeResult, int]:
    result = DecodeResult(format=None)
    skipped = decode_treatments(document, patient_id="syn-t", received_at=NOW, result=result)
    return result, skipped


def test_a_meal_bolus_gives_insulin_and_carbs_at_its_time() -> None:
    meal = {
        "_id": "abc123",
        "eventType": "Meal Bolus",
        "created_at": "2026-11-24T11:40:00.000Z",
        "insulin": 4.5,
        "carbs": 45,
        "enteredBy": "xdrip",
    }
    result, skipped = decode([meal])
    assert not result.problems and skipped == 0
    by_code = {o.code: o for o in result.observations}
    assert set(by_code) == {INSULIN_CODE, CARBS_CODE}
    assert (by_code[INSULIN_CODE].value, by_code[INSULIN_CODE].unit) == (4.5, "[IU]")
    assert (by_code[CARBS_CODE].value, by_code[CARBS_CODE].unit) == (45, "g")
    assert all(o.kind is Kind.LAB and o.source == "xdrip" for o in result.observations)
    assert by_code[CARBS_CODE].effective_at == datetime(2026, 11, 24, 11, 40, tzinfo=UTC)
    assert {o.event_id for o in result.observations} == {"abc123-insulin", "abc123-carbs"}


def test_a_note_or_a_temporary_basal_is_acknowledged_not_kept() -> None:
    note = {"eventType": "Note", "created_at": "2026-11-24T11:40:00Z", "notes": "walk"}
    basal = {"eventType": "Temp Basal", "date": 1795000000000, "rate": 0.5, "duration": 30}
    result, skipped = decode([note, basal])
    assert (result.observations, result.problems, skipped) == ([], [], 2)


def test_malformed_treatments_are_refused_with_reasons() -> None:
    no_time = {"eventType": "Correction Bolus", "insulin": 2}
    words = {"eventType": "Carb Correction", "created_at": "2026-11-24T11:00:00Z", "carbs": "x"}
    implausible = {"eventType": "Correction Bolus", "created_at": "2026-11-24T11:00:00Z",
                   "insulin": 900}  # fmt: skip
    result, _ = decode([no_time, words, implausible, "text"])
    reasons = [(p.reason, p.pointer) for p in result.problems]
    assert (Reason.TIME, "/0") in reasons and (Reason.SCHEMA, "/1/carbs") in reasons
    assert any(r is Reason.IMPLAUSIBLE and p.startswith("/2") for r, p in reasons)
    assert (Reason.SCHEMA, "/3") in reasons and not result.observations


def test_epoch_milliseconds_and_mills_are_times_too() -> None:
    result, _ = decode(
        [{"insulin": 1, "date": 1795000000000}, {"carbs": 10, "mills": 1795000000000}]
    )
    assert [o.effective_at for o in result.observations] == [
        datetime.fromtimestamp(1795000000, UTC)
    ] * 2
