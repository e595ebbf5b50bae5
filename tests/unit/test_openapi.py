"""The OpenAPI document: valid OpenAPI 3.1, every route the worker serves and no other,
its security as this deployment's settings make it."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.web import View
from openapi_spec_validator import validate

from streams.http.openapi import OPERATIONS, document
from streams.settings import BrokerProfile, Settings
from streams.worker import create_worker

METHODS = ("get", "post", "put", "patch", "delete")


def served(settings: Settings) -> set[tuple[str, str]]:
    app = create_worker(settings, BrokerProfile.KAFKA)
    return {
        (method, path)
        for path, view in app.web.views.items()
        for method in METHODS
        if getattr(type(view), method) is not getattr(View, method)
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(worker={"data_dir": tmp_path / "data"})


def test_every_served_route_is_described_and_no_other(settings: Settings) -> None:
    described = {(op.method, op.path) for op in OPERATIONS}
    assert served(settings) == described
    spec = document(settings)
    assert {(m, p) for p, ms in spec["paths"].items() for m in ms} == described


def test_the_document_is_valid_openapi_3_1(settings: Settings) -> None:
    spec = document(settings)
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    with_provider = Settings(
        worker={"data_dir": settings.worker.data_dir},
        oidc={"issuer": "https://login.hospital.example/realms/h", "audience": "bedside-api"},
        web={"token": "a-device-token-0123456789abcdef0123456789"},
    )
    validate(document(with_provider))


def test_errors_have_bodies_and_security_follows_the_settings(settings: Settings) -> None:
    spec = document(settings)
    alerts = spec["paths"]["/v1/alerts"]["get"]
    assert alerts["security"] == [{"user": []}]
    assert "$ref" in alerts["responses"]["401"]["content"]["application/json"]["schema"]
    # a loopback worker without a device token: the gateway takes writes without one
    assert spec["paths"]["/v1/observations"]["post"]["security"] == []
    fhir = spec["paths"]["/fhir/Observation"]["post"]["responses"]["400"]["content"]
    assert fhir["application/fhir+json"]["schema"]["$ref"].endswith("/OperationOutcome")
    protected = document(
        Settings(
            worker={"data_dir": settings.worker.data_dir},
            web={"token": "a-device-token-0123456789abcdef0123456789"},
            oidc={"issuer": "https://login.hospital.example/realms/h", "audience": "bedside-api"},
        )
    )
    assert protected["paths"]["/v1/observations"]["post"]["security"] == [{"device": []}]
    assert protected["paths"]["/v1/me"]["get"]["security"] == [{"user": []}, {"oidc": []}]
    oidc = protected["components"]["securitySchemes"]["oidc"]
    assert oidc["openIdConnectUrl"].endswith("/realms/h/.well-known/openid-configuration")
    every_status = {s for op in OPERATIONS for s in op.answers}
    assert {400, 401, 403, 404, 409, 413, 415, 503} <= every_status


def test_request_bodies_are_the_models_that_validate_them(settings: Settings) -> None:
    spec = document(settings)
    native = spec["paths"]["/v1/observations"]["post"]["requestBody"]["content"]
    one = native["application/json"]["schema"]["oneOf"][0]
    assert one == {"$ref": "#/components/schemas/NativeObservation"}
    schema = spec["components"]["schemas"]["NativeObservation"]
    assert {"patient_id", "code", "value", "effective_at"} <= set(schema["required"])
    exchange = spec["components"]["schemas"]["CodeExchange"]
    assert exchange["properties"]["code_verifier"]["minLength"] == 43
