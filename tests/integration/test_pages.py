"""The ward view and the patient page in real Chromium while a simulated cohort streams.

Two users of one ward keep the ward view open for 30 s of live load (the demo's simulated
cohort, published at speed): charts in view are never blank, the page's steady-state request
rate stays under its budget, a new alarm shows within 2 s of its event, an acknowledgement
made in one browser shows in the other with its user's name. Screenshots of the ward view
and of a patient's page go to test-artifacts/ (the docs show copies from docs/screens/).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from care_team import USERS
from stream_helpers import produce, read_topic
from stream_helpers import recent_cgm as cgm

from deploy.simulate import build_cohort, plan, publish
from streams.engine.broker import client_options
from streams.settings import Settings

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)

BROWSER = Path(__file__).parents[1] / "browser"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
LOAD_S = 30
MAX_REQUESTS_PER_S = 5
MAX_ALARM_DELAY_MS = 2000


async def opened_at(settings: Settings, patient: str, timeout: float = 60) -> int:
    """When the broker got the ``opened`` event of ``patient``'s first alarm (its timestamp)."""
    consumer = AIOKafkaConsumer(
        settings.topics.alerts,
        auto_offset_reset="earliest",
        group_id=None,
        **client_options(settings.kafka),
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["patient_id"] == patient and event["transition"] == "opened":
                        return int(record.timestamp)
    finally:
        await consumer.stop()
    raise AssertionError(f"no alarm opened for {patient}")


def test_ward_view_and_patient_page_under_live_load(
    spawn_worker: Callable[..., Any], stack_settings: Settings, browser_ready: None
) -> None:
    worker = spawn_worker(BEDSIDE_STREAM__TICK_INTERVAL_S="1")  # the shipped models serve
    worker.wait_ready(timeout=120)
    # the demo's cohort: 2 h of data published over ~36 s, while the pages are open
    cohort = build_cohort(12, 2.0)
    the_plan = plan(cohort, stack_settings, "mixed")
    streaming = threading.Thread(
        target=lambda: asyncio.run(publish(stack_settings, cohort, the_plan, 200.0)), daemon=True
    )
    streaming.start()
    ARTIFACTS.mkdir(exist_ok=True)
    patient = f"page-{uuid.uuid4().hex[:6]}"
    (_, _, token_a), (_, _, token_b) = USERS["nurse-general"], USERS["physician-general"]
    page = subprocess.Popen(
        ["node", str(BROWSER / "ward_view.mjs"), worker.url, token_a, "nurse-general", token_b,
         patient, str(LOAD_S), str(ARTIFACTS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert page.stdout is not None
    assert page.stdout.readline().strip() == "READY", page.stderr.read() if page.stderr else ""
    time.sleep(8)  # well into the load: the alarm arrives on a busy page
    asyncio.run(produce(stack_settings, [cgm(patient, 15 - 5 * i, v) for i, v in
                                         enumerate([110, 66, 62, 58])]))  # fmt: skip
    published = asyncio.run(opened_at(stack_settings, patient))
    out, err = page.communicate(timeout=180)
    streaming.join(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] and result["page_errors"] == [], (result, err[-3000:])
    assert result["checks"] >= 5 and result["blank"] == [], result
    assert result["requests_per_s"] < MAX_REQUESTS_PER_S, result
    delay = result["alarm_shown_at_ms"] - published
    assert delay <= MAX_ALARM_DELAY_MS, (delay, result)
    assert result["ack_seen_in_other_browser_ms"] < 15000
    assert result["rows"] >= 10 and result["patient_cgm_points"] >= 4
    acks = asyncio.run(
        read_topic(
            stack_settings, stack_settings.topics.alert_acks, {patient}, lambda f: bool(f[patient])
        )
    )
    assert [(a["action"], a["by"]) for a in acks[patient]] == [("ack", "nurse-general")]
    for name in ("ward-view.png", "patient-page.png"):
        assert (ARTIFACTS / name).stat().st_size > 20_000, name
    (ARTIFACTS / "ward-view.json").write_text(json.dumps({**result, "alarm_delay_ms": delay}))
