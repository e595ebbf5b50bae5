"""Stored patient state is versioned and by field name; state written before loads after.

``fixtures/window-v2.msgpack`` is a window as the worker stored it in format 2 (positional
lists, the format before 2026-12: 10 h of heart rate, SpO2 and respiratory rate, 2 h of CGM
through a low, an open ``low`` alarm, a lab), with ``window-v2.json`` describing what it
holds. ``fixtures/window-v3.msgpack`` is that window as format 3 stored it (msgpack by field
name, float32 buffers: 2026-12-01 to 12-04), with 20 h more of heart rate and temperature
and a written UTC offset; ``window-v3.json`` describes it. Each was written once by the
code of its format and committed: never regenerate them.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from streams.http.patient_window import window_document
from streams.processing.codec import FORMAT_VERSION, decode, encode
from streams.processing.state import PatientState
from streams.windows.compact import decode_document, encode_document

FIXTURES = Path(__file__).parent / "fixtures"
OLD = (FIXTURES / "window-v2.msgpack").read_bytes()
EXPECTED = json.loads((FIXTURES / "window-v2.json").read_text())
V3 = (FIXTURES / "window-v3.msgpack").read_bytes()
EXPECTED_V3 = json.loads((FIXTURES / "window-v3.json").read_text())


def document(state: PatientState) -> dict:
    return decode_document(FORMAT_VERSION, encode(state))


def stored(data: dict) -> bytes:
    return encode_document(FORMAT_VERSION, data)


def as_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_state_written_in_format_2_loads_with_everything_it_held() -> None:
    state = decode(OLD)
    document = as_json(window_document(state))
    document["summary"].pop("latest_at")  # type: ignore[index, union-attr]  # added since
    for key in ("patient_id", "summary", "cgm", "vitals", "labs", "baselines", "open_alerts"):
        assert document[key] == EXPECTED[key], key  # type: ignore[index]
    assert (
        as_json({k: a.to_list() for k, a in state.alarms.alarms.items()}) == EXPECTED["alarms_full"]
    )
    assert as_json(state.alarms.history) == EXPECTED["alarm_history"]
    assert as_json(state.window.last_seen) == EXPECTED["last_seen"]
    assert [
        state.window.events,
        state.window.duplicates,
        state.window.late,
        state.arrived_at,
    ] == EXPECTED["counters"]
    assert (
        as_json([state.predictions.pending, state.predictions.recent, state.predictions.cgm_low])
        == EXPECTED["quality"]
    )


def test_it_is_stored_again_in_the_current_format_and_round_trips() -> None:
    state = decode(OLD)
    raw = encode(state)
    assert decode_document(FORMAT_VERSION, raw)["format"] == FORMAT_VERSION == 4
    again = decode(raw)
    assert encode(again) == raw
    assert window_document(again) == window_document(state)


def test_a_field_added_later_does_not_shift_what_is_stored() -> None:
    data = document(decode(OLD))
    # a newer writer added fields (top level, in a section, in an alarm): an older or the
    # same reader keeps every known field exactly and ignores the rest
    data["a_new_section"] = {"x": 1}
    data["signals"]["a_new_signal"] = [1, 2, 3]
    for alarm in data["alarms"]["open"].values():
        alarm["a_new_alarm_field"] = "x"
    state = decode(stored(data))
    assert window_document(state) == window_document(decode(OLD))


def test_a_field_missing_from_an_older_record_takes_its_default() -> None:
    data = document(decode(OLD))
    del data["quality"], data["counters"]["arrived_at"]
    for alarm in data["alarms"]["open"].values():
        del alarm["acknowledged_by"]
    state = decode(stored(data))
    assert state.predictions.pending == [] and state.predictions.cgm_low is False
    assert state.arrived_at == 0
    assert all(a.acknowledged_by is None for a in state.alarms.alarms.values())
    assert state.window.events == EXPECTED["counters"][0]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        decode(msgpack.packb({"format": 99, "patient_id": "x"}))
    with pytest.raises(ValueError, match="format"):
        decode(stored({"format": 99, "patient_id": "x"}))


def test_state_written_in_format_3_loads_with_everything_it_held() -> None:
    state = decode(V3)
    shown = as_json(window_document(state))
    shown["summary"].pop("latest_at")  # type: ignore[index, union-attr]  # added since
    for key in ("patient_id", "summary", "cgm", "vitals", "labs", "baselines", "open_alerts"):
        assert shown[key] == EXPECTED_V3[key], key  # type: ignore[index]
    assert (
        as_json({k: a.to_dict() for k, a in state.alarms.alarms.items()})
        == EXPECTED_V3["alarms_full"]
    )
    assert as_json(state.alarms.history) == EXPECTED_V3["alarm_history"]
    assert as_json(state.window.last_seen) == EXPECTED_V3["last_seen"]
    assert [
        state.window.events,
        state.window.duplicates,
        state.window.late,
        state.arrived_at,
    ] == EXPECTED_V3["counters"]
    assert state.window.utc_offset_min == EXPECTED_V3["utc_offset_min"] == 480


def test_format_3_is_stored_again_smaller_and_loses_nothing() -> None:
    state = decode(V3)
    raw = encode(state)
    again = decode(raw)
    assert window_document(again) == window_document(state)
    assert again.window.vitals == state.window.vitals and again.window.cgm == state.window.cgm
    assert {c: b.hours for c, b in again.window.baselines.items()} == {
        c: b.hours for c, b in state.window.baselines.items()
    }
    assert len(raw) < len(V3) / 3
