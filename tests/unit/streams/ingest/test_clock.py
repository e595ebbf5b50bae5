"""The server owns the clock: event-time bounds for every format, never the sender's arrival."""

from collections.abc import Callable
from typing import Any

import pytest

from streams.ingest.problems import DecodeResult, Reason
from streams.schemas.observation import Kind

from .conftest import NOW

Decode = Callable[..., DecodeResult]
Make = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    "when",
    [
        "1900-01-01T00:00:00Z",  # once crashed every worker (window offsets overflowed)
        "1969-12-31T23:59:59Z",  # dropped by the time-series server after a 200
        "1999-12-31T23:59:59Z",
        "9999-12-31T23:54:00Z",  # once crashed the worker at a tick (year 10000)
        "2100-01-01T00:00:00Z",  # once silenced the patient (watermark in 2100)
        "2026-11-24T12:05:01Z",  # just over 5 min after arrival
    ],
)
def test_native_times_out_of_bounds_are_refused(decode: Decode, native: Make, when: str) -> None:
    result = decode(native(effective_at=when))
    assert not result.observations
    assert [p.reason for p in result.problems] == [Reason.TIME]


def test_the_senders_received_at_is_ignored(decode: Decode, native: Make) -> None:
    # a sender's own arrival time would let it date readings years ahead
    result = decode(native(effective_at="2100-01-01T00:00:00Z", received_at="2100-01-01T00:01:00Z"))
    assert [p.reason for p in result.problems] == [Reason.TIME]
    [obs] = decode(native(received_at="2100-01-01T00:01:00Z")).observations
    assert obs.received_at == NOW


@pytest.mark.parametrize("when", [2026, "2026", 1764590400, "1764590400", 1.5, "2026-11-24"])
def test_numeric_year_only_or_date_only_native_times_are_refused(
    decode: Decode, native: Make, when: Any
) -> None:
    # pydantic read "2026" as Unix seconds (1970-01-01T00:33:46Z)
    result = decode(native(effective_at=when))
    assert not result.observations
    assert [p.reason for p in result.problems] == [Reason.TIME]


def test_the_bounds_themselves_are_accepted(decode: Decode, native: Make) -> None:
    for when in ("2000-01-01T00:00:00Z", "2026-11-24T12:05:00Z"):
        assert decode(native(effective_at=when)).observations, when


@pytest.mark.parametrize(
    "when", ["1900-01-01T00:00:00Z", "9999-12-31T23:54:00+00:00", "2100-01-01T00:00:00Z"]
)
def test_fhir_times_out_of_bounds_are_refused(decode: Decode, fhir_obs: Make, when: str) -> None:
    result = decode(fhir_obs(effectiveDateTime=when))
    assert [p.reason for p in result.problems] == [Reason.TIME]


def test_a_bare_year_is_refused_even_for_labs(decode: Decode, fhir_obs: Make) -> None:
    result = decode(fhir_obs(code="4548-4", value=7.1, unit_code="%", effectiveDateTime="2026"))
    assert [p.reason for p in result.problems] == [Reason.TIME]
    assert "bare year" in result.problems[0].message


@pytest.mark.parametrize("date_ms", [0, 2026, -1, 4102444800000, 253402300740000])
def test_nightscout_dates_out_of_bounds_are_refused(decode: Decode, date_ms: int) -> None:
    entry = {"type": "sgv", "sgv": 120, "date": date_ms, "device": "d"}
    result = decode([entry], key=b"syn-ns")
    assert not result.observations
    assert [p.reason for p in result.problems] == [Reason.TIME]


def test_glucose_topic_times_are_bounded_too(decode: Decode, native: Make) -> None:
    doc = native(code="99504-3", value=120, unit="mg/dL", effective_at="9999-12-31T23:54:00Z")
    result = decode(doc, topic_kind=Kind.GLUCOSE)
    assert [p.reason for p in result.problems] == [Reason.TIME]
