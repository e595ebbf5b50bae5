"""Who sees and does what, on a real worker: every endpoint x role x ward, the audit chain.

Patients of ward 4B come from the patient settings file; everyone else is in the default
ward ``general``. The users (tests/support/care_team.py): a nurse of each ward, a physician
of ``general`` and an admin of every ward.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from care_team import USERS
from event_stream import event_stream
from stream_helpers import produce, read_topic
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings

RUN = uuid.uuid4().hex[:6]
IN_4B, IN_GENERAL = f"acc-4b-{RUN}", f"acc-gen-{RUN}"
TOKENS = {name: token for name, (_, _, token) in USERS.items()}
SEES = {  # who sees which patient
    "nurse-general": {IN_GENERAL},
    "nurse-4b": {IN_4B},
    "physician-general": {IN_GENERAL},
    "admin-all": {IN_4B, IN_GENERAL},
}


def call(
    worker: Any, method: str, path: str, token: str | None, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{worker.url}{path}", body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def ward_worker(
    spawn_worker: Callable[..., Any], stack_settings: Settings, tmp_path_factory: Any
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A worker with one low-glucose alarm in each ward; the alarms by patient."""
    settings_file: Path = tmp_path_factory.mktemp("wards") / "patients.json"
    settings_file.write_text(json.dumps({IN_4B: {"ward": "4B"}}))
    worker = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_STREAM__PATIENT_SETTINGS_FILE=str(settings_file),
    )
    worker.wait_ready()
    readings = [cgm(p, 15 - 5 * i, v) for p in (IN_4B, IN_GENERAL) for i, v in
                enumerate([110, 66, 62, 60])]  # fmt: skip
    asyncio.run(produce(stack_settings, readings))
    deadline, alerts = time.monotonic() + 60, {}
    while len(alerts) < 2:
        assert time.monotonic() < deadline, "the alarms never reached the alert view"
        status, body = call(worker, "GET", "/v1/alerts", TOKENS["admin-all"])
        assert status == 200
        alerts = {a["patient_id"]: a for a in body["open"] if a["patient_id"] in SEES["admin-all"]}
        time.sleep(0.3)
    return worker, alerts


@pytest.mark.parametrize("user", [*TOKENS, None])
def test_the_alert_list_shows_only_the_users_wards(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], user: str | None
) -> None:
    worker, _ = ward_worker
    status, body = call(worker, "GET", "/v1/alerts", TOKENS.get(user or ""))
    if user is None:
        assert status == 401
        return
    assert status == 200
    listed = {a["patient_id"] for a in body["open"]} & SEES["admin-all"]
    assert listed == SEES[user]


@pytest.mark.parametrize("user", [*TOKENS, None])
def test_ward_rows_show_only_the_users_wards(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], user: str | None
) -> None:
    worker, _ = ward_worker
    status, body = call(worker, "GET", "/v1/ward", TOKENS.get(user or ""))
    if user is None:
        assert status == 401
        return
    rows = {r["patient_id"]: r for r in body["patients"]}
    assert set(rows) & SEES["admin-all"] == SEES[user]
    for patient in SEES[user]:  # each row carries its own open alarm
        assert [a["patient_id"] for a in rows[patient]["alarms"]] == [patient]


def streamed_patients(
    worker: Any, path: str, token: str, then: Callable[[], None], expected: set[str]
) -> set[str]:
    """Patients named by what ``path`` streams for ``token`` after ``then()``: until it has
    named the ``expected`` ones and 3 s more have passed (a patient who should not be there
    would come in the same flush or the next), or 30 s (a loaded machine may take seconds to
    process the readings and flush the rows). ``then()`` is done again after 10 s and 20 s
    without the expected patients (each time new events): the check is what the stream
    carries, not how soon."""
    found: set[str] = set()
    with event_stream(worker.web_port, path, token) as lines:
        then()
        started = time.monotonic()
        deadline, again = started + 30, [started + 10, started + 20]
        while (left := deadline - time.monotonic()) > 0:
            if again and time.monotonic() >= again[0] and not expected <= found:
                again.pop(0)
                then()
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                found |= {i["patient_id"] for i in (data if isinstance(data, list) else [data])}
                if expected <= found & SEES["admin-all"]:
                    deadline = min(deadline, time.monotonic() + 3)
    return found & SEES["admin-all"]


def test_a_view_narrowed_to_one_ward_and_a_patients_stream(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    worker, _ = ward_worker
    status, body = call(worker, "GET", "/v1/ward?ward=4B", TOKENS["admin-all"])
    assert status == 200 and {r["patient_id"] for r in body["patients"]} & SEES["admin-all"] == {
        IN_4B
    }
    assert call(worker, "GET", "/v1/ward?ward=general", TOKENS["nurse-4b"])[0] == 403
    assert (
        call(worker, "GET", f"/v1/ward/stream?patient={IN_GENERAL}", TOKENS["nurse-4b"])[0] == 403
    )
    status, me = call(worker, "GET", "/v1/me", TOKENS["admin-all"])
    assert {"4B", "general"} <= set(me["ward_choices"])


@pytest.mark.parametrize("user", ["nurse-4b", "physician-general", "admin-all"])
def test_live_streams_carry_only_the_users_wards(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], stack_settings: Settings, user: str
) -> None:
    """The pages' stream (rows) and the alert stream, opened before both wards change."""
    worker, alerts = ward_worker

    def new_readings() -> None:
        # new events (their own ids): the fixture's last readings were already "0 min ago"
        fresh = uuid.uuid4().hex[:6]
        readings = [cgm(p, 0, 57, event_id=f"{p}-{fresh}") for p in (IN_4B, IN_GENERAL)]
        asyncio.run(produce(stack_settings, readings))

    def snoozed_by_admin() -> None:
        for alert in alerts.values():
            path = f"/v1/alerts/{alert['alert_id']}/snooze"
            assert call(worker, "POST", path, TOKENS["admin-all"], b'{"minutes": 5}')[0] == 202

    rows = streamed_patients(worker, "/v1/ward/stream", TOKENS[user], new_readings, SEES[user])
    assert rows == SEES[user], "the ward stream's rows"
    transitions = streamed_patients(
        worker, "/v1/alerts/stream", TOKENS[user], snoozed_by_admin, SEES[user]
    )
    assert transitions == SEES[user], "the alert stream's transitions"


@pytest.mark.parametrize("user", [*TOKENS, None])
def test_a_patients_history_needs_the_patients_ward(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], user: str | None
) -> None:
    worker, _ = ward_worker
    for patient in (IN_4B, IN_GENERAL):
        status, body = call(worker, "GET", f"/v1/patients/{patient}/alerts", TOKENS.get(user or ""))
        expected = 401 if user is None else 200 if patient in SEES[user] else 403
        assert status == expected, (user, patient)
        if status == 200:
            assert body["transitions"] and body["transitions"][0]["transition"] == "opened"


@pytest.mark.parametrize("path", ["/v1/patients/{}/series?hours=1", "/v1/patients/{}/window"])
@pytest.mark.parametrize("user", [*TOKENS, None, "wrong"])
def test_patient_reads_need_the_patients_ward(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], user: str | None, path: str
) -> None:
    worker, _ = ward_worker
    for patient in (IN_4B, IN_GENERAL):
        token = TOKENS.get(user or "", "not-a-token" if user == "wrong" else None)
        status, body = call(worker, "GET", path.format(patient), token)
        if user in SEES:
            expected = 200 if patient in SEES[user] else 403
        else:
            expected = 401
        assert status == expected, (user, patient, body)
        if expected == 200:
            assert body["patient_id"] == patient


@pytest.mark.parametrize("user", [*TOKENS, None])
def test_actions_need_the_patients_ward_and_name_the_user(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]],
    stack_settings: Settings,
    user: str | None,
) -> None:
    worker, alerts = ward_worker
    for patient, alert in alerts.items():
        status, body = call(
            worker,
            "POST",
            f"/v1/alerts/{alert['alert_id']}/snooze",
            TOKENS.get(user or ""),
            b'{"by": "Dr. Forged (chief physician)", "minutes": 5}',
        )
        if user is None:
            assert status == 401
        elif patient in SEES[user]:
            assert status == 202 and body["by"] == user, body
        else:
            assert status == 404, body  # another ward's alarm is not known to this user
    if user is not None:
        found = asyncio.run(
            read_topic(
                stack_settings,
                stack_settings.topics.alerts,
                SEES[user],
                lambda f: all(any(e.get("by") == user for e in f[p]) for p in SEES[user]),
            )
        )
        names = {e.get("by") for events in found.values() for e in events} - {None}
        assert "Dr. Forged (chief physician)" not in names and user in names


@pytest.mark.parametrize(("user", "expected"), [
    ("admin-all", 200), ("physician-general", 403), ("nurse-4b", 403), (None, 401)
])  # fmt: skip
def test_settings_are_for_admins(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]], user: str | None, expected: int
) -> None:
    worker, _ = ward_worker
    status, body = call(worker, "GET", "/v1/admin/users", TOKENS.get(user or ""))
    assert status == expected
    if status == 200:
        assert {u["name"] for u in body["users"]} == set(TOKENS)
        assert "token" not in json.dumps(body)  # neither tokens nor their digests
    status, me = call(worker, "GET", "/v1/me", TOKENS.get(user or ""))
    assert (status, me.get("name")) == ((200, user) if user else (401, None))


def test_the_audit_chain_of_a_run_verifies_and_an_altered_event_does_not(
    ward_worker: tuple[Any, dict[str, dict[str, Any]]],
    stack_env_vars: dict[str, str],
    run_bedside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_bedside("audit", "verify", env=stack_env_vars)
    report = json.loads(result.stdout)
    assert report["ok"] and report["chained"] >= 2 and report["events"] >= report["chained"]
    wrong_key = {**stack_env_vars, "BEDSIDE_SECURITY__SIGNING_KEY": "another-key-" + "z" * 32}
    result = run_bedside("audit", "verify", env=wrong_key, check=False)
    assert result.returncode == 1 and json.loads(result.stdout)["broken_patients"] >= 2


def test_no_auth_is_a_loud_development_switch(spawn_worker: Callable[..., Any]) -> None:
    worker = spawn_worker(BEDSIDE_SCORING__MODELS="[]", BEDSIDE_WEB__AUTH="none")
    worker.wait_ready()
    status, body = call(worker, "GET", "/v1/alerts", None)
    assert status == 200 and "open" in body
    assert "BEDSIDE_WEB__AUTH=none" in worker.log.read_text()


def test_a_revoked_users_open_streams_end_and_a_deleted_users_file_keeps_nobody(
    spawn_worker: Callable[..., Any], tmp_path: Path
) -> None:
    from care_team import write_users

    users = write_users(tmp_path / "users.json")
    worker = spawn_worker(BEDSIDE_SCORING__MODELS="[]", BEDSIDE_WEB__USERS_FILE=str(users))
    worker.wait_ready()
    token = TOKENS["nurse-general"]
    ended: dict[str, float] = {}

    def watch(path: str) -> None:
        request = urllib.request.Request(
            f"{worker.url}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as stream:
            while stream.readline():
                pass
        ended[path] = time.monotonic()

    paths = ("/v1/alerts/stream", "/v1/ward/stream")
    threads = [threading.Thread(target=watch, args=(p,), daemon=True) for p in paths]
    for thread in threads:
        thread.start()
    time.sleep(2)
    assert not ended  # streaming
    data = json.loads(users.read_text())
    data["users"] = [u for u in data["users"] if u["name"] != "nurse-general"]
    users.write_text(json.dumps(data))
    revoked = time.monotonic()
    for thread in threads:
        thread.join(20)
    assert set(ended) == set(paths), "a revoked user's stream stayed open"
    assert max(ended.values()) - revoked < 15  # the reload interval and the stream's check
    assert call(worker, "GET", "/v1/alerts", token)[0] == 401  # the page signs in again
    assert call(worker, "GET", "/v1/alerts", TOKENS["nurse-4b"])[0] == 200
    users.unlink()
    deadline = time.monotonic() + 10
    while call(worker, "GET", "/v1/alerts", TOKENS["nurse-4b"])[0] != 401:
        assert time.monotonic() < deadline, "a deleted users file kept its users"
        time.sleep(0.5)
    assert "no users now" in worker.log.read_text()
