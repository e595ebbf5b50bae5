"""``bedside worker`` starts against the embedded stack, detects it and serves its probes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_helpers import alerts_of, produce, send_raw
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_worker_autodetects_the_embedded_broker_and_becomes_ready(
    stack_env_vars: dict[str, str], port: Callable[[], int], tmp_path: Path
) -> None:
    web_port = port()
    env = {
        **os.environ,
        **stack_env_vars,
        "BEDSIDE_WORKER__APP_ID": f"worker-test-{web_port}",
        "BEDSIDE_WORKER__DATA_DIR": str(tmp_path / "worker"),
    }
    bedside = shutil.which("bedside", path=str(Path(sys.executable).parent))
    assert bedside
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [bedside, "worker", "--web-port", str(web_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            try:
                status, body = _get(f"http://127.0.0.1:{web_port}/ready")
            except OSError:
                time.sleep(0.3)
                continue
            if status == 200:
                break
            time.sleep(0.3)
        assert body.get("ready") is True, body
        status, health = _get(f"http://127.0.0.1:{web_port}/health")
        assert status == 200 and health["status"] == "ok"
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    text = log.read_text()
    assert "using the embedded profile" in text
    assert "TansuConsumer" in text


def test_worker_says_how_to_start_the_stack_when_no_broker_answers(
    port: Callable[[], int],
) -> None:
    bedside = shutil.which("bedside", path=str(Path(sys.executable).parent))
    assert bedside
    env = {**os.environ, "BEDSIDE_KAFKA__BOOTSTRAP": f"127.0.0.1:{port()}"}
    result = subprocess.run(
        [bedside, "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "not reachable" in result.stderr and "bedside stack up" in result.stderr


def test_json_logs_are_one_object_per_line_with_no_patient_data(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    """``BEDSIDE_LOG__FORMAT=json``: from start to stop every line the worker writes is one
    JSON object a log pipeline can read, a poison record and an alarm in between, and the
    patients' ids appear in none of them."""
    worker = spawn_worker(BEDSIDE_LOG__FORMAT="json", BEDSIDE_SCORING__MODELS="[]")
    worker.wait_ready()
    patient = f"json-log-{uuid.uuid4().hex[:6]}"
    asyncio.run(send_raw(stack_settings, stack_settings.topics.glucose, patient.encode(), b"{"))
    asyncio.run(produce(stack_settings, [cgm(patient, 10, 41), cgm(patient, 5, 38)]))
    found = alerts_of(stack_settings, {patient}, "urgent_low", timeout=60)
    assert any(e["kind"] == "urgent_low" for e in found[patient])
    worker.stop()
    lines = [line for line in worker.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # each line parses on its own
    assert len(records) > 20
    for record in records:
        assert {"time", "level", "logger", "message", "pid"} <= set(record), record
        assert record["time"].endswith("+00:00")
    assert {r["level"] for r in records} >= {"INFO"}
    assert any("Ready" in r["message"] for r in records)
    assert patient not in worker.log.read_text()
