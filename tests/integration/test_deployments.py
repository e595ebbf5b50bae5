"""The shipped deployments, as a Service would use them (no container engine runs here).

Workers start with the web environment the k8s ConfigMap and the compose file set, on the
real stack, with the time-series database away for the whole test (60 s and more). A
Service's requests name it in ``Host``: they are answered, not refused as a foreign host;
the readiness endpoint the manifests probe stays 200 throughout, while ``/ready`` tells the
truth about the outage.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from stream_helpers import produce
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
OUTAGE_S = 60


def manifest_web_env() -> dict[str, dict[str, str]]:
    """The BEDSIDE_WEB__ host settings each deployment sets."""
    config = next(yaml.safe_load_all((DEPLOY / "k8s" / "configmap.yaml").read_text()))["data"]
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    worker = compose["services"]["worker"]["environment"]
    wanted = ("BEDSIDE_WEB__HOST", "BEDSIDE_WEB__ALLOWED_HOSTS")
    return {
        "k8s": {k: str(config[k]) for k in wanted},
        "compose": {k: str(worker[k]) for k in wanted},
    }


def readiness_path() -> str:
    sts = next(yaml.safe_load_all((DEPLOY / "k8s" / "statefulset.yaml").read_text()))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    path: str = container["readinessProbe"]["httpGet"]["path"]
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert path in " ".join(compose["services"]["worker"]["healthcheck"]["test"])
    return path


def send(worker: Any, method: str, path: str, host: str, body: Any = None, token: str = "") -> int:
    request = urllib.request.Request(
        f"{worker.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Host": host,
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **({"Content-Type": "application/json"} if body is not None else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0  # not listening yet


def test_the_manifests_workers_answer_their_service_names_and_stay_ready_through_an_outage(
    spawn_worker: Callable[..., Any], stack_settings: Settings, port: Callable[[], int]
) -> None:
    probe = readiness_path()
    token = secrets.token_hex(32)
    dead_database = f"http://127.0.0.1:{port()}"  # nothing listens there: an outage
    service_names = {"k8s": "bedside-web.default.svc.cluster.local:80", "compose": "worker:6066"}
    workers = {
        name: spawn_worker(
            **env,
            BEDSIDE_WEB__TOKEN=token,
            BEDSIDE_SCORING__MODELS="[]",
            BEDSIDE_INFLUX__URL=dead_database,
            BEDSIDE_STREAM__DEGRADED_AFTER_S="5",
        )
        for name, env in manifest_web_env().items()
    }
    deadline = time.monotonic() + 60
    while not all(send(w, "GET", probe, "localhost") == 200 for w in workers.values()):
        assert time.monotonic() < deadline, "not serving after 60 s"
        for worker in workers.values():
            worker.assert_alive()
        time.sleep(0.5)
    patient = f"deploy-{secrets.token_hex(3)}"
    asyncio.run(produce(stack_settings, [cgm(patient, 5, 120), cgm(patient, 0, 118)]))

    started, readings = time.monotonic(), 0
    while time.monotonic() - started < OUTAGE_S:
        for name, worker in workers.items():
            host = service_names[name]
            assert send(worker, "GET", probe, host) == 200, (name, "readiness")
            reading = cgm(patient, -readings / 60, 117)  # a Service-routed gateway write
            status = send(worker, "POST", "/v1/observations", host, reading, token)
            assert status == 200, (name, status)
            readings += 1
            assert send(worker, "POST", "/v1/observations", "evil.example", reading, token) == 403
        time.sleep(2)
    for name, worker in workers.items():
        with urllib.request.urlopen(f"{worker.url}/serving", timeout=10) as response:
            serving = json.loads(response.read())
        assert serving["serving"] and any("time-series" in p for p in serving["monitoring"])
        try:
            urllib.request.urlopen(f"{worker.url}/ready", timeout=10)
            raise AssertionError(f"{name}: /ready said ready during the outage")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert any("time-series" in p for p in json.loads(error.read())["problems"])
        worker.assert_alive()
