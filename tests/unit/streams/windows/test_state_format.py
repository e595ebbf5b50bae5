"""Stored patient state is versioned and by field name; state written before loads after.

``fixtures/window-v2.msgpack`` is a window as the worker stored it in format 2 (positional
lists, the format before 2026-12: 10 h of heart rate, SpO2 and respiratory rate, 2 h of CGM
through a low, an open ``low`` alarm, a lab), with ``window-v2.json`` describing what it
holds. Written once by that code and committed: never regenerate it.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from streams.http.patients import window_document
from streams.windows.patient import FORMAT_VERSION, PatientWindow

FIXTURES = Path(__file__).parent / "fixtures"
OLD = (FIXTURES / "window-v2.msgpack").read_bytes()
EXPECTED = json.loads((FIXTURES / "window-v2.json").read_text())


def as_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_state_written_in_format_2_loads_with_everything_it_held() -> None:
    window = PatientWindow.from_bytes(OLD)
    document = as_json(window_document(window))
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
    assert msgpack.unpackb(raw, strict_map_key=False)["format"] == FORMAT_VERSION == 3
    again = PatientWindow.from_bytes(raw)
    assert again.to_bytes() == raw
    assert window_document(again) == window_document(window)


def test_a_field_added_later_does_not_shift_what_is_stored() -> None:
    data = msgpack.unpackb(PatientWindow.from_bytes(OLD).to_bytes(), strict_map_key=False)
    # a newer writer added fields (top level, in a section, in an alarm): an older or the
    # same reader keeps every known field exactly and ignores the rest
    data["a_new_section"] = {"x": 1}
    data["signals"]["a_new_signal"] = [1, 2, 3]
    for alarm in data["alarms"]["open"].values():
        alarm["a_new_alarm_field"] = "x"
    window = PatientWindow.from_bytes(msgpack.packb(data))
    assert window_document(window) == window_document(PatientWindow.from_bytes(OLD))


def test_a_field_missing_from_an_older_record_takes_its_default() -> None:
    data = msgpack.unpackb(PatientWindow.from_bytes(OLD).to_bytes(), strict_map_key=False)
    del data["quality"], data["counters"]["arrived_at"]
    for alarm in data["alarms"]["open"].values():
        del alarm["acknowledged_by"]
    window = PatientWindow.from_bytes(msgpack.packb(data))
    assert window.predictions == [] and window.cgm_low is False and window.arrived_at == 0
    assert all(a.acknowledged_by is None for a in window.alarms.values())
    assert window.events == EXPECTED["counters"][0]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        PatientWindow.from_bytes(msgpack.packb({"format": 99, "patient_id": "x"}))
