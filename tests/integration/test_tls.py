"""HTTPS end to end with certificates made in the test: the worker's web server serves TLS,
and it writes to and reads from a time-series server over HTTPS (VictoriaMetrics ``-tls``).

Kafka over TLS with SASL and ACLs: ``test_kafka_security.py``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from care_team import NURSE
from certs import loopback_server, pem, pem_key
from stream_helpers import produce
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = loopback_server("bedside test")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(pem(cert))
    key_file.write_bytes(pem_key(key))
    return cert_file, key_file


@pytest.fixture
def https_tsdb(tmp_path: Path, port: Callable[[], int]) -> Iterator[tuple[str, Path, Path]]:
    """VictoriaMetrics on HTTPS: (url, certificate, key)."""
    cert, key = certificate(tmp_path)
    tsdb_port = port()
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    process = subprocess.Popen(
        [binary, f"-httpListenAddr=127.0.0.1:{tsdb_port}", f"-storageDataPath={tmp_path / 'tsdb'}",
         "-tls", f"-tlsCertFile={cert}", f"-tlsKeyFile={key}", "-search.latencyOffset=0s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"https://127.0.0.1:{tsdb_port}"
    trust = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", context=trust, timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline, "the HTTPS time-series server did not start"
            time.sleep(0.3)
    try:
        yield url, cert, key
    finally:
        process.terminate()
        process.wait(timeout=30)


def get(url: str, trust: ssl.SSLContext, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, context=trust, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except urllib.error.URLError:
        return 0, {}  # not listening yet


def test_https_web_server_and_time_series_server(
    spawn_worker: Callable[..., Any],
    stack_settings: Settings,
    https_tsdb: tuple[str, Path, Path],
) -> None:
    tsdb_url, cert, key = https_tsdb
    worker = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_INFLUX__URL=tsdb_url,
        BEDSIDE_INFLUX__CA_FILE=str(cert),
        BEDSIDE_WEB__TLS_CERTFILE=str(cert),
        BEDSIDE_WEB__TLS_KEYFILE=str(key),
    )
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{worker.web_port}"
    deadline = time.monotonic() + 60
    while get(f"{base}/ready", trust)[1].get("ready") is not True:
        worker.assert_alive()
        assert time.monotonic() < deadline, "the worker is not ready over HTTPS"
        time.sleep(0.5)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/ready", timeout=5).read()
    with pytest.raises(urllib.error.URLError):  # a client that does not trust it refuses
        urllib.request.urlopen(f"{base}/ready", timeout=5)
    patient = f"tls-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(stack_settings, [cgm(patient, m, 100 + m) for m in (15, 10, 5, 0)]))
    deadline = time.monotonic() + 30
    values: list[float] = []
    while len(values) < 4:  # written over HTTPS, read back over HTTPS, served over HTTPS
        assert time.monotonic() < deadline, values
        status, body = get(f"{base}/v1/patients/{patient}/series?hours=1", trust, NURSE)
        assert status == 200
        values = sorted(v for _, v in body["glucose"].get("99504-3", []))
        time.sleep(0.5)
    assert values == [100, 105, 110, 115]
