"""The uploaders and FHIR clients people run, against a running worker.

- nightscout-librelink-up: before every upload it asks ``GET /api/v1/entries?count=1`` for the
  newest reading (throws unless 200 and a JSON array), then posts the newer readings and
  takes any answer but exactly 200 as a failure;
- xDrip+ / Loop / AndroidAPS (v1): ``status.json``, entries, treatments, device status;
- fhirpy from PyPI: an Observation created (its id from the answer), a transaction Bundle;
- a secret of patient A neither reads nor writes patient B.
The request sequences follow those clients' public sources (paths, headers, bodies).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from care_team import USERS
from fhir.resources.capabilitystatement import CapabilityStatement
from fhirpy import SyncFHIRClient

from streams.schemas.codes import CARBS_CODE, INSULIN_CODE

RUN = uuid.uuid4().hex[:6]
A, B = f"libre-{RUN}", f"xdrip-{RUN}"
SECRETS = {A: f"secret-of-{A}-0123456789", B: f"secret-of-{B}-0123456789"}
TOKEN = "integration-gateway-token-0123456789abcdef"
ACCESS = {A: f"librelink-{RUN}-4f2a9c1e"}  # a Nightscout access token of patient A
ADMIN = USERS["admin-all"][2]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Nightscout's scheme


@pytest.fixture(scope="module")
def worker(spawn_worker: Callable[..., Any]) -> Any:
    started = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_WEB__TOKEN=TOKEN,
        BEDSIDE_WEB__NIGHTSCOUT_SECRETS=json.dumps(SECRETS),
        BEDSIDE_WEB__NIGHTSCOUT_TOKENS=json.dumps(ACCESS),
    )
    started.wait_ready()
    return started


def call(
    worker: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{worker.url}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def readings(start: datetime, values: list[int]) -> list[dict[str, Any]]:
    """Entries as librelink-up builds them: sgv, date (ms), dateString, direction, device."""
    out = []
    for i, value in enumerate(values):
        at = start + timedelta(minutes=5 * i)
        out.append(
            {
                "type": "sgv",
                "sgv": value,
                "direction": "Flat",
                "device": "nightscout-librelink-up",
                "date": int(at.timestamp() * 1000),
                "dateString": at.isoformat().replace("+00:00", "Z"),
            }
        )
    return out


def newest(worker: Any, secret_header: dict[str, str], path: str = "/api/v1/entries") -> Any:
    status, _, body = call(worker, "GET", f"{path}?count=1", headers=secret_header)
    assert status == 200 and isinstance(body, list), (status, body)
    return body


def test_the_librelink_up_sequence(worker: Any) -> None:
    header = {"api-secret": sha1(SECRETS[A])}
    assert newest(worker, header) == []  # nothing yet: an empty array, not an error
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    sent = readings(start, [118, 121, 125, 132])
    status, _, body = call(worker, "POST", "/api/v1/entries", sent, header)
    assert status == 200  # exactly 200: librelink-up takes anything else as a failure
    assert [(e["sgv"], e["date"]) for e in body] == [(e["sgv"], e["date"]) for e in sent]
    deadline = time.monotonic() + 30
    while not (found := newest(worker, header)) and time.monotonic() < deadline:
        time.sleep(0.5)  # the stream writes the series, then they can be read back
    [latest] = found
    assert (latest["sgv"], latest["date"], latest["type"]) == (132, sent[-1]["date"], "sgv")
    assert latest["direction"] == "FortyFiveUp"  # +1.4 mg/dL/min over the last 5 min
    # the next round asks again and posts only what is newer
    after = [e for e in readings(start, [118, 121, 125, 132, 134]) if e["date"] > latest["date"]]
    status, _, _ = call(worker, "POST", "/api/v1/entries", after, header)
    assert status == 200
    history = call(worker, "GET", "/api/v1/entries.json?count=10", headers=header)[2]
    assert len(history) >= 4 and history[0]["date"] >= history[-1]["date"]


def test_the_xdrip_sequence_and_treatments_in_the_window(worker: Any) -> None:
    secret = {"api-secret": sha1(SECRETS[B])}
    status, _, body = call(worker, "GET", "/api/v1/status.json")
    assert status == 200 and body["status"] == "ok" and body["apiEnabled"] is True
    assert body["settings"]["units"] == "mg/dl"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    entry = readings(at, [142])
    status, _, _ = call(worker, "POST", "/api/v1/entries/sgv.json", entry, secret)
    assert status == 200
    meal = {
        "eventType": "Meal Bolus",
        "created_at": at.isoformat().replace("+00:00", "Z"),
        "insulin": 4.5,
        "carbs": 45,
        "enteredBy": "xdrip",
        "_id": f"meal-{RUN}",
    }
    note = {"eventType": "Note", "created_at": meal["created_at"], "notes": "walk"}
    status, _, body = call(worker, "POST", "/api/v1/treatments", [meal, note], secret)
    assert status == 200 and len(body) == 2
    loop = {"device": "loop://iPhone", "created_at": meal["created_at"], "loop": {"iob": 1.2}}
    status, _, body = call(worker, "POST", "/api/v1/devicestatus", loop, secret)
    assert status == 200 and body[0]["device"] == "loop://iPhone"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + 30
    while True:
        status, _, window = call(worker, "GET", f"/v1/patients/{B}/window", headers=admin)
        if status == 200 and INSULIN_CODE in window["labs"]:
            break
        assert time.monotonic() < deadline, (status, window)
        time.sleep(0.5)
    assert window["labs"][INSULIN_CODE][1] == 4.5 and window["labs"][CARBS_CODE][1] == 45
    assert window["cgm"][-1][1] == 142


def test_a_secret_reads_and_writes_its_own_patient_only(worker: Any) -> None:
    a = {"api-secret": sha1(SECRETS[A])}
    deadline = time.monotonic() + 30
    while len(seen_by_a := call(worker, "GET", "/api/v1/entries?count=100", headers=a)[2]) < 5:
        assert time.monotonic() < deadline, seen_by_a  # A's five readings, all stored
        time.sleep(0.5)
    assert all(e["sgv"] != 142 for e in seen_by_a)  # B's reading is not A's
    deadline = time.monotonic() + 30
    while True:  # B's reading is stored (the series server shows new points within seconds)
        path = f"/api/v1/entries?count=100&secret={SECRETS[B]}"  # ?secret=, in clear
        status, _, seen_by_b = call(worker, "GET", path)
        if seen_by_b or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200 and [e["sgv"] for e in seen_by_b] == [142]
    by_token = call(worker, "GET", f"/api/v1/entries?count=100&token={ACCESS[A]}")[2]
    bearer = {"Authorization": f"Bearer {ACCESS[A]}"}
    assert (
        by_token == seen_by_a == call(worker, "GET", "/api/v1/entries?count=100", None, bearer)[2]
    )
    for headers in (
        {"api-secret": sha1("a guess")},
        {"Authorization": "Bearer guess-0123456789"},
        {},
    ):
        status, _, body = call(worker, "GET", "/api/v1/entries?count=1", headers=headers)
        assert status == 401 and body["error"] == "unauthorized"
        status, _, _ = call(
            worker, "POST", "/api/v1/entries", readings(datetime.now(UTC), [99]), headers
        )
        assert status == 401


def test_fhirpy_creates_observations_and_posts_a_transaction(worker: Any) -> None:
    client = SyncFHIRClient(f"{worker.url}/fhir", authorization=f"Bearer {TOKEN}")
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)

    def heart_rate(minutes: int, value: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/fhir-{RUN}"},
            "effectiveDateTime": (at + timedelta(minutes=minutes)).isoformat(),
            "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
        }

    observation = client.resource("Observation", **heart_rate(0, 72))
    observation.save()
    assert observation.id  # taken from the server's answer
    status, headers, stored = call(
        worker,
        "POST",
        "/fhir/Observation",
        heart_rate(0, 72),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"},
    )
    assert status == 201 and stored["id"] == observation.id  # the same record, the same id
    assert headers["Location"].endswith(f"/fhir/Observation/{observation.id}/_history/1")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate(i, 80 + i), "request": {"method": "POST", "url": "Observation"}}
            for i in range(1, 4)
        ],
    }
    answer = client.execute("", method="post", data=bundle)
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    status, _, statement = call(worker, "GET", "/fhir/metadata")
    assert status == 200
    CapabilityStatement.model_validate(statement)
