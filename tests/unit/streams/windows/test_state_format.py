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
from streams.windows.compact import decode_document, encode_document
from streams.windows.patient import FORMAT_VERSION, PatientWindow

FIXTURES = Path(__file__).parent / "fixtures"
OLD = (FIXTURES / "window-v2.msgpack").read_bytes()
EXPECTED = json.loads((FIXTURES / "window-v2.json").read_text())
V3 = (FIXTURES / "window-v3.msgpack").read_bytes()
EXPECTED_V3 = json.loads((FIXTURES / "window-v3.json").read_text())


def document(window: PatientWindow) -> dict:
    return decode_document(FORMAT_VERSION, window.to_bytes())


def stored(data: dict) -> bytes:
    return encode_document(FORMAT_VERSION, data)


def as_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_state_written_in_format_2_loads_with_everything_it_held() -> None:
    window = PatientWindow.from_bytes(OLD)
    document = as_json(window_document(window))
    document["summary"].pop("latest_at")  # type: ignore[index, union-attr]  # added since
    for key in ("patient_id", "summary", "cgm", "vitals", "labs", "baselines", "open_alerts"):
        assert document[key] == EXPECTED[key], key  # type: ignore[index]
    assert as_json({k: a.to_list() for k, a in window.alarms.items()}) == EXPECTED["alarms_full"]
    assert as_json(window.alarm_history) == EXPECTED["alarm_history"]
    assert as_json(window.last_seen) == EXPECTED["last_seen"]
    assert [window.events, window.duplicates, window.late, window.arrived_at] == EXPECTED[
        "counters"
    ]
    assert (
        as_json([window.predictions, window.recent_predictions, window.cgm_low])
        == EXPECTED["quality"]
    )


def test_it_is_stored_again_in_the_current_format_and_round_trips() -> None:
    window = PatientWindow.from_bytes(OLD)
    raw = window.to_bytes()
    assert decode_document(FORMAT_VERSION, raw)["format"] == FORMAT_VERSION == 4
    again = PatientWindow.from_bytes(raw)
    assert again.to_bytes() == raw
    assert window_document(again) == window_document(window)


def test_a_field_added_later_does_not_shift_what_is_stored() -> None:
    data = document(PatientWindow.from_bytes(OLD))
    # a newer writer added fields (top level, in a section, in an alarm): an older or the
    # same reader keeps every known field exactly and ignores the rest
    data["a_new_section"] = {"x": 1}
    data["signals"]["a_new_signal"] = [1, 2, 3]
    for alarm in data["alarms"]["open"].values():
        alarm["a_new_alarm_field"] = "x"
    window = PatientWindow.from_bytes(stored(data))
    assert window_document(window) == window_document(PatientWindow.from_bytes(OLD))


def test_a_field_missing_from_an_older_record_takes_its_default() -> None:
    data = document(PatientWindow.from_bytes(OLD))
    del data["quality"], data["counters"]["arrived_at"]
    for alarm in data["alarms"]["open"].values():
        del alarm["acknowledged_by"]
    window = PatientWindow.from_bytes(stored(data))
    assert window.predictions == [] and window.cgm_low is False and window.arrived_at == 0
    assert all(a.acknowledged_by is None for a in window.alarms.values())
    assert window.events == EXPECTED["counters"][0]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        PatientWindow.from_bytes(msgpack.packb({"format": 99, "patient_id": "x"}))
    with pytest.raises(ValueError, match="format"):
        PatientWindow.from_bytes(stored({"format": 99, "patient_id": "x"}))


def test_state_written_in_format_3_loads_with_everything_it_held() -> None:
    window = PatientWindow.from_bytes(V3)
    shown = as_json(window_document(window))
    shown["summary"].pop("latest_at")  # type: ignore[index, union-attr]  # added since
    for key in ("patient_id", "summary", "cgm", "vitals", "labs", "baselines", "open_alerts"):
        assert shown[key] == EXPECTED_V3[key], key  # type: ignore[index]
    assert as_json({k: a.to_dict() for k, a in window.alarms.items()}) == EXPECTED_V3["alarms_full"]
    assert as_json(window.alarm_history) == EXPECTED_V3["alarm_history"]
    assert as_json(window.last_seen) == EXPECTED_V3["last_seen"]
    assert [window.events, window.duplicates, window.late, window.arrived_at] == EXPECTED_V3[
        "counters"
    ]
    assert window.utc_offset_min == EXPECTED_V3["utc_offset_min"] == 480


def test_format_3_is_stored_again_smaller_and_loses_nothing() -> None:
    window = PatientWindow.from_bytes(V3)
    raw = window.to_bytes()
    again = PatientWindow.from_bytes(raw)
    assert window_document(again) == window_document(window)
    assert again.vitals == window.vitals and again.cgm == window.cgm
    assert {c: b.hours for c, b in again.baselines.items()} == {
        c: b.hours for c, b in window.baselines.items()
    }
    assert len(raw) < len(V3) / 3
