"""The HTTP API against its own OpenAPI document, property-based (schemathesis).

The worker's ``/openapi.json`` is loaded as a client would; every operation (but the
long-lived event streams) is called with generated requests, valid and invalid, with the
credentials its security names (a user's token, the device token, a Nightscout secret):
no answer is a 5xx, each status is one the document lists, and each body and content type
conforms to the schema given for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from care_team import USERS
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks

DEVICE_TOKEN = "api-contract-device-token-0123456789abcdef"
NS_SECRET = "api-contract-nightscout-secret"
STREAMS = ("/v1/alerts/stream", "/v1/ward/stream")
EXAMPLES = 25


@pytest.fixture(scope="module")
def api_worker(spawn_worker: Callable[..., Any]) -> Any:
    worker = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_WEB__TOKEN=DEVICE_TOKEN,
        BEDSIDE_WEB__NIGHTSCOUT_SECRETS=f'{{"api-contract-ns": "{NS_SECRET}"}}',
    )
    worker.wait_ready()
    return worker


def credentials(security: list[dict[str, Any]]) -> dict[str, str]:
    """Headers for the first scheme an operation names (none: no headers)."""
    names = [next(iter(s)) for s in security if s]
    if not names:
        return {}
    if names[0] == "user":
        return {"Authorization": f"Bearer {USERS['admin-all'][2]}"}
    if names[0] == "device":
        return {"Authorization": f"Bearer {DEVICE_TOKEN}"}
    return {"api-secret": hashlib.sha1(NS_SECRET.encode()).hexdigest()}  # noqa: S324


def fuzz(operation: Any, url: str, headers: dict[str, str], mode: GenerationMode) -> int:
    """Call ``operation`` with generated requests (valid or invalid by its schema, ``mode``);
    raises on the first nonconforming answer. Returns how many calls were made."""
    calls = []

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        calls.append(1)
        case.call_and_validate(base_url=url, headers=headers, timeout=30, excluded_checks=excluded)

    # a schema-valid reading may still be implausible (a heart rate of 1e300): refusing it
    # with 400 is right, so valid-by-schema need not mean 2xx
    excluded = [checks.positive_data_acceptance]
    if operation.method == "get":  # reads ignore query parameters they do not know, as HTTP does
        excluded.append(checks.negative_data_rejection)
    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        return len(calls)  # nothing to make invalid: no parameters, no body
    return len(calls)


def test_every_operation_answers_as_its_document_says(api_worker: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{api_worker.url}/openapi.json")
    spec = schema.raw_schema
    called, failed, calls = [], {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in STREAMS:
            continue
        name = f"{operation.method.upper()} {operation.path}"
        headers = credentials(spec["paths"][operation.path][operation.method]["security"])
        try:
            for mode in GenerationMode:
                calls += fuzz(operation, api_worker.url, headers, mode)
        except BaseException as error:  # every operation is tried; all are reported
            if isinstance(error, KeyboardInterrupt):
                raise
            failed[name] = str(error)[:1500]
        called.append(name)
    print(f"{calls} calls to {len(called)} operations")
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())
    described = {f"{m.upper()} {p}" for p, ms in spec["paths"].items() for m in ms}
    # schemathesis leaves out the document it was loaded from (read above, as a client would)
    assert set(called) == described - {f"GET {p}" for p in (*STREAMS, "/openapi.json")}
