from collections.abc import Callable

import pytest

from streams.ingest.problems import DecodeResult, Reason
from streams.schemas.observation import Format, Kind

Decode = Callable[..., DecodeResult]

ENTRY = {
    "type": "sgv",
    "sgv": 142,
    "date": 1795520400000,
    "dateString": "2026-11-24T11:40:00.000Z",
    "direction": "Flat",
    "device": "xDrip-DexcomG6",
    "_id": "65600f",
}


def test_uploader_entries_work_unchanged_keyed_by_patient(decode: Decode) -> None:
    result = decode(
        [ENTRY, {**ENTRY, "sgv": 150, "date": ENTRY["date"] + 300_000, "_id": "6561"}],
        key=b"syn-ns-1",
        topic_kind=Kind.GLUCOSE,
    )
    assert not result.problems and result.format is Format.NIGHTSCOUT
    first = result.observations[0]
    assert (
        first.patient_id,
        first.code,
        first.value,
        first.unit,
        first.source,
        first.event_id,
    ) == ("syn-ns-1", "99504-3", 142.0, "mg/dL", "xDrip-DexcomG6", "65600f")
    assert first.effective_at.isoformat() == "2026-11-24T11:40:00+00:00"


def test_date_string_alone_and_meter_glucose(decode: Decode) -> None:
    entry = {"type": "mbg", "mbg": 99, "dateString": "2026-11-24T12:40:00+01:00"}
    [obs] = decode(entry, key=b"syn-ns-2").observations
    assert obs.code == "41653-7" and obs.effective_at.isoformat() == "2026-11-24T11:40:00+00:00"


@pytest.mark.parametrize(
    ("entry", "key", "reason"),
    [
        ({**ENTRY, "type": "cal"}, b"p", Reason.UNSUPPORTED),
        (ENTRY, None, Reason.PATIENT),
        ({**ENTRY, "sgv": "high"}, b"p", Reason.SCHEMA),
        ({"type": "sgv", "sgv": 100}, b"p", Reason.TIME),
        ({**ENTRY, "sgv": 5}, b"p", Reason.IMPLAUSIBLE),  # a sensor error code, not a glucose
    ],
)
def test_bad_entries(
    decode: Decode, entry: dict[str, object], key: bytes | None, reason: Reason
) -> None:
    result = decode(entry, key=key)
    assert not result.observations
    assert [p.reason for p in result.problems] == [reason]
