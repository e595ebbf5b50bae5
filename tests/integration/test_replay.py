"""``bedside simulate`` and ``bedside replay`` publish to the real broker, keyed by patient."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream_helpers import read_topic

from streams.settings import Settings


def test_replay_routes_each_record_to_its_topic_and_patient(
    run_bedside: Callable[..., Any],
    stack_env_vars: dict[str, str],
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    patient = f"replay-{uuid.uuid4().hex[:6]}"
    at = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    lines = [
        {
            "patient_id": patient,
            "code": "99504-3",
            "value": 101,
            "unit": "mg/dL",
            "effective_at": at,
            "source": "file",
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": at,
            "valueQuantity": {
                "value": 77,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        },
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = run_bedside("replay", str(path), env=stack_env_vars)
    assert "sent 2 records" in result.stdout
    glucose = asyncio.run(
        read_topic(
            stack_settings, stack_settings.topics.glucose, {patient}, lambda f: bool(f[patient])
        )
    )
    vitals = asyncio.run(
        read_topic(
            stack_settings, stack_settings.topics.vitals, {patient}, lambda f: bool(f[patient])
        )
    )
    assert glucose[patient][0]["value"] == 101
    assert vitals[patient][0]["resourceType"] == "Observation"


def test_simulate_publishes_a_cohort_and_its_ground_truth(
    run_bedside: Callable[..., Any],
    stack_env_vars: dict[str, str],
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    truth = tmp_path / "truth.jsonl"
    result = run_bedside(
        "simulate",
        "--patients",
        "3",
        "--duration",
        "2",
        "--speed",
        "0",
        "--faults",
        "none",
        "--format",
        "native",
        "--truth",
        str(truth),
        env=stack_env_vars,
    )
    assert "sent" in result.stdout and truth.exists()
    found = asyncio.run(
        read_topic(
            stack_settings,
            stack_settings.topics.glucose,
            {"sim-0000", "sim-0002"},
            lambda f: len(f["sim-0000"]) >= 20 and len(f["sim-0002"]) >= 20,
        )
    )
    first = found["sim-0000"][0]
    assert first["code"] == "99504-3" and first["source"] == "bedside-sim"
