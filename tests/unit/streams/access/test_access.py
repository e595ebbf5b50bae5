"""What a caller may see: credentials, wards, and model details for physicians only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streams.access.users import Role, add_user
from streams.http.signin import Access, Denied
from streams.settings import Settings, StreamSettings, WebSettings


class Request:
    """The two things Access reads of an HTTP request."""

    def __init__(self, token: str | None = None, query: str | None = None) -> None:
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.query = {"token": query} if query else {}


def access(tmp_path: Path, **web: Any) -> tuple[Access, dict[str, str]]:
    users = tmp_path / "users.json"
    tokens = {
        "nurse": add_user(users, "nurse", Role.NURSE, ["4B"]),
        "doctor": add_user(users, "doctor", Role.PHYSICIAN, ["4B"]),
    }
    patients = tmp_path / "patients.json"
    patients.write_text(json.dumps({"p-4b": {"ward": "4B"}}))
    settings = Settings(
        web=WebSettings(users_file=users, **web),
        stream=StreamSettings(patient_settings_file=patients),
    )
    return Access(settings), tokens


def test_callers_are_named_by_their_token_in_the_header_never_in_the_url(
    tmp_path: Path,
) -> None:
    found, tokens = access(tmp_path)
    assert found.caller(Request(tokens["nurse"])).name == "nurse"  # type: ignore[arg-type]
    for request in (Request(), Request("bsu_guess"), Request(query=tokens["doctor"])):
        with pytest.raises(Denied) as denied:
            found.caller(request)  # type: ignore[arg-type]
        assert denied.value.status == 401


def test_wards_come_from_the_patient_settings_else_the_default(tmp_path: Path) -> None:
    found, tokens = access(tmp_path, default_ward="general")
    assert (found.ward_of("p-4b"), found.ward_of("anyone")) == ("4B", "general")
    nurse = Request(tokens["nurse"])
    assert found.patient(nurse, "p-4b").name == "nurse"  # type: ignore[arg-type]
    with pytest.raises(Denied) as denied:
        found.patient(nurse, "anyone")  # type: ignore[arg-type]
    assert denied.value.status == 403 and "4B" in denied.value.message
    with pytest.raises(Denied):
        found.role(nurse, Role.ADMIN)  # type: ignore[arg-type]


def test_model_drivers_are_shown_to_physicians_not_nurses(tmp_path: Path) -> None:
    found, tokens = access(tmp_path)
    event = {
        "patient_id": "p-4b",
        "reason": "Risk of deterioration is 0.61. Driven by: heart rate, SpO2. Review.",
        "evidence": {"p_deterioration": 0.61, "drivers": [{"signal": "heart rate"}]},
    }
    nurse = found.caller(Request(tokens["nurse"]))  # type: ignore[arg-type]
    doctor = found.caller(Request(tokens["doctor"]))  # type: ignore[arg-type]
    assert found.shown(doctor, event) == event
    shown = found.shown(nurse, event)
    assert "drivers" not in shown["evidence"] and "Driven by" not in shown["reason"]
    assert shown["reason"] == "Risk of deterioration is 0.61. Review."
    assert shown["evidence"]["p_deterioration"] == 0.61


def test_without_users_nobody_reads_and_auth_none_lets_anyone(tmp_path: Path) -> None:
    nobody = Access(Settings())
    with pytest.raises(Denied):
        nobody.caller(Request("anything"))  # type: ignore[arg-type]
    anyone = Access(Settings(web=WebSettings(auth="none")))
    assert anyone.caller(Request()).may(Role.ADMIN)  # type: ignore[arg-type]


def test_a_changed_users_file_is_taken_in_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found, tokens = access(tmp_path)
    monkeypatch.setattr("streams.http.signin.RELOAD_CHECK_S", 0.0)
    users = tmp_path / "users.json"
    carol = add_user(users, "carol", Role.NURSE, ["4B"])
    os.utime(users, ns=(1, time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    assert found.caller(Request(carol)).name == "carol"  # type: ignore[arg-type]
    users.write_text("{not json")
    os.utime(users, ns=(1, time.time_ns() + 2 * 10**9))
    assert found.caller(Request(tokens["nurse"])).name == "nurse"  # type: ignore[arg-type]


def test_a_user_narrows_the_view_to_one_of_their_wards_only(tmp_path: Path) -> None:
    found, tokens = access(tmp_path, default_ward="general")
    nurse = found.caller(Request(tokens["nurse"]))  # type: ignore[arg-type]
    assert found.ward_choices(nurse) == ["4B"]
    asking = Request(tokens["nurse"])
    asking.query = {"ward": "4B"}
    assert found.ward_filter(asking, nurse) == "4B"  # type: ignore[arg-type]
    asking.query = {"ward": "general"}
    with pytest.raises(Denied) as denied:
        found.ward_filter(asking, nurse)  # type: ignore[arg-type]
    assert denied.value.status == 403
    everyone = Access(Settings(web=WebSettings(auth="none")))
    assert everyone.ward_choices(everyone.caller(Request())) == ["general"]  # type: ignore[arg-type]


def test_a_revoked_or_moved_user_is_no_longer_the_same_user_and_a_missing_file_is_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found, tokens = access(tmp_path)
    monkeypatch.setattr("streams.http.signin.RELOAD_CHECK_S", 0.0)
    users = tmp_path / "users.json"
    nurse = found.caller(Request(tokens["nurse"]))  # type: ignore[arg-type]
    doctor = found.caller(Request(tokens["doctor"]))  # type: ignore[arg-type]
    assert found.still(nurse) and found.still(doctor)
    data = json.loads(users.read_text())
    data["users"] = [u for u in data["users"] if u["name"] != "nurse"]  # revoked
    for user in data["users"]:
        user["wards"] = ["5C"]  # the doctor moves ward
    users.write_text(json.dumps(data))
    os.utime(users, ns=(1, time.time_ns() + 10**9))
    assert not found.still(nurse) and not found.still(doctor)
    moved = found.caller(Request(tokens["doctor"]))  # type: ignore[arg-type]
    assert moved.wards == ("5C",) and found.still(moved)
    users.unlink()  # deleting the file keeps nobody
    assert not found.still(moved)
    with pytest.raises(Denied) as denied:
        found.caller(Request(tokens["doctor"]))  # type: ignore[arg-type]
    assert denied.value.status == 401
