"""Ingest through the real broker and through the HTTP gateway, on the real stack."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.engine.broker import client_options
from streams.settings import Settings

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)

TOKEN = "integration-token-of-at-least-32-chars"
NS_SECRET = "integration-nightscout-secret"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RUN = uuid.uuid4().hex[:8]
WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
WHEN_MS = int(WHEN.timestamp() * 1000)


@pytest.fixture(scope="module")
def worker(spawn_worker: Callable[..., Any]) -> Any:
    ns_patient = f"ns-http-{RUN}"
    started = spawn_worker(
        BEDSIDE_WEB__TOKEN=TOKEN,
        BEDSIDE_WEB__NIGHTSCOUT_SECRETS=json.dumps({ns_patient: NS_SECRET}),
        BEDSIDE_INGEST__MAX_RECORD_BYTES="4096",
    )
    started.wait_ready()
    return started


def _fhir(patient: str, code: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": WHEN.isoformat(),
        "valueQuantity": {"value": value, "system": UCUM, "code": unit},
        **extra,
    }


def _bp_bundle(patient: str) -> dict[str, Any]:
    panel = {
        "resourceType": "Observation",
        "status": "final",
        "id": f"bp-{patient}",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": WHEN.isoformat(),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 131, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 84, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": panel, "request": {"method": "POST", "url": "Observation"}}],
    }


async def _produce(settings: Settings, records: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        sent = {}
        for topic, key, value in records:
            sent[key] = await producer.send_and_wait(topic, value, key=key.encode())
        return sent
    finally:
        await producer.stop()


async def _dead_letters(settings: Settings, keys: set[str], timeout: float = 30) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        settings.topics.deadletter,
        auto_offset_reset="earliest",
        group_id=None,
        **client_options(settings.kafka),
    )
    await consumer.start()
    found: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(found) != keys:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key in keys:
                        found[key] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return found


def test_every_format_through_the_broker_and_every_failure_dead_lettered(
    worker: Any, stack_settings: Settings, read_series: Callable[..., list[dict[str, Any]]]
) -> None:
    topics = stack_settings.topics
    native_p, fhir_p, ns_p, lab_p = (f"{k}-{RUN}" for k in ("native", "fhir", "ns", "lab"))
    bad_json, refused = f"badjson-{RUN}", f"refused-{RUN}"
    records = [
        (
            topics.vitals,
            native_p,
            orjson.dumps(
                {
                    "patient_id": native_p,
                    "code": "8867-4",
                    "value": 77,
                    "unit": "/min",
                    "effective_at": WHEN.isoformat(),
                    "source": "watch",
                }
            ),
        ),
        (topics.vitals, fhir_p, orjson.dumps(_bp_bundle(fhir_p))),
        (
            topics.glucose,
            ns_p,
            orjson.dumps(
                [
                    {"type": "sgv", "sgv": 61, "date": WHEN_MS, "device": "xDrip"},
                    {"type": "sgv", "sgv": 58, "date": WHEN_MS + 300_000, "device": "xDrip"},
                ]
            ),
        ),
        (
            topics.labs,
            lab_p,
            orjson.dumps(
                {
                    "patient_id": lab_p,
                    "code": "4548-4",
                    "value": 7.9,
                    "unit": "%",
                    "effective_at": WHEN.isoformat(),
                }
            ),
        ),
        (topics.vitals, bad_json, b'{"patient_id": "x", '),
        (
            topics.vitals,
            refused,
            orjson.dumps(_fhir(refused, "8867-4", 70, "/min", status="entered-in-error")),
        ),
    ]
    sent = asyncio.run(_produce(stack_settings, records))

    assert read_series(f'vitals_value{{patient_id="{native_p}"}}', 1)[0]["values"] == [77]
    bp = read_series(f'vitals_value{{patient_id="{fhir_p}"}}', 2)
    assert {s["metric"]["code"]: s["values"] for s in bp} == {"8480-6": [131], "8462-4": [84]}
    [cgm] = read_series(f'glucose_value{{patient_id="{ns_p}"}}', 1)
    assert cgm["values"] == [61, 58] and cgm["timestamps"] == [WHEN_MS, WHEN_MS + 300_000]
    [lab] = read_series(f'labs_value{{patient_id="{lab_p}"}}', 1)
    assert lab["metric"]["code"] == "4548-4" and lab["values"] == [7.9]

    letters = asyncio.run(_dead_letters(stack_settings, {bad_json, refused}))
    assert letters[bad_json]["reason"] == "malformed_json"
    assert letters[refused]["reason"] == "status"
    for key, (_topic, _key, value) in zip((bad_json, refused), records[4:], strict=True):
        letter = letters[key]
        assert base64.b64decode(letter["original_b64"]) == value
        assert letter["source_topic"] == topics.vitals
        assert (letter["partition"], letter["offset"]) == (sent[key].partition, sent[key].offset)
        assert letter["message"]


def _post(
    worker: Any,
    path: str,
    body: bytes | dict[str, Any] | list[Any],
    *,
    token: str | None = TOKEN,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = urllib.request.Request(f"{worker.url}{path}", data=data, method="POST")
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_gateway_routes(worker: Any, read_series: Callable[..., list[dict[str, Any]]]) -> None:
    patient = f"http-{RUN}"
    native = {
        "patient_id": patient,
        "code": "9279-1",
        "value": 22,
        "unit": "/min",
        "effective_at": WHEN.isoformat(),
        "event_id": f"rr-{RUN}",
    }
    status, body = _post(worker, "/v1/observations", native)
    assert (status, body["accepted"], body["event_ids"]) == (200, 1, [f"rr-{RUN}"])

    status, body = _post(
        worker,
        "/fhir/Observation",
        _fhir(patient, "59408-5", 93, "%"),
        content_type="application/fhir+json",
    )
    assert (status, body["resourceType"], body["meta"]["versionId"]) == (201, "Observation", "1")
    assert body["id"] and body["valueQuantity"]["value"] == 93  # the resource as stored
    status, body = _post(worker, "/fhir", _bp_bundle(patient), content_type="application/fhir+json")
    assert (status, body["type"]) == (200, "transaction-response")
    [entry] = body["entry"]  # one per entry sent (a BP panel: two observations)
    assert entry["response"]["status"] == "201 Created"
    assert entry["response"]["location"].startswith("Observation/")
    series = read_series(f'vitals_value{{patient_id="{patient}"}}', 4)
    assert {s["metric"]["code"]: s["values"] for s in series} == {
        "9279-1": [22],
        "59408-5": [93],
        "8480-6": [131],
        "8462-4": [84],
    }

    status, body = _post(
        worker,
        "/fhir/Observation",
        _fhir(patient, "8867-4", 70, "kg"),
        content_type="application/fhir+json",
    )
    assert status == 400 and body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "value" and "kg" in body["issue"][0]["diagnostics"]
    status, body = _post(
        worker, "/fhir", _fhir(patient, "8867-4", 70, "/min"), content_type="application/fhir+json"
    )
    assert status == 400 and "Bundle" in body["issue"][0]["diagnostics"]


def test_http_gateway_nightscout_with_api_secret(
    worker: Any, read_series: Callable[..., list[dict[str, Any]]]
) -> None:
    digest = hashlib.sha1(NS_SECRET.encode()).hexdigest()  # noqa: S324 - Nightscout's scheme
    entries = [{"type": "sgv", "sgv": 101, "date": WHEN_MS, "device": "loop"}]
    status, body = _post(
        worker, "/api/v1/entries", entries, token=None, headers={"api-secret": digest}
    )
    assert status == 200 and [(e["type"], e["sgv"], e["date"]) for e in body] == [
        ("sgv", 101, WHEN_MS)
    ]
    [series] = read_series(f'glucose_value{{patient_id="ns-http-{RUN}"}}', 1)
    assert series["values"] == [101]
    status, body = _post(
        worker,
        "/api/v1/entries",
        entries,
        token=None,
        headers={"api-secret": hashlib.sha1(b"guess").hexdigest()},
    )  # noqa: S324
    assert status == 401 and body["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [({"token": None}, 401), ({"token": "wrong"}, 401), ({"content_type": "text/plain"}, 415)],
)
def test_http_gateway_refusals(worker: Any, kwargs: dict[str, Any], status: int) -> None:
    code, body = _post(worker, "/v1/observations", {"patient_id": "x"}, **kwargs)
    assert code == status and body["message"]


def test_http_gateway_size_limit(worker: Any) -> None:
    big = [
        {
            "patient_id": f"p{i}",
            "code": "8867-4",
            "value": 70,
            "unit": "/min",
            "effective_at": WHEN.isoformat(),
        }
        for i in range(80)
    ]
    code, body = _post(worker, "/v1/observations", big)
    assert code == 413 and body["error"] == "too_large"
