"""``bedside bench --parts-only`` runs without a stack and prints every part."""

from __future__ import annotations

import json
import os
import time

from click.testing import CliRunner

from deploy.benchkit import WorkerRun, cpu_seconds
from deploy.cli import bench


def test_parts_only_prints_a_table_and_json() -> None:
    result = CliRunner().invoke(bench, ["--parts-only"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    data = json.loads(lines[-1])
    assert set(data["decode_records_per_s"]) == {"native", "fhir", "nightscout"}
    assert all(v > 0 for v in data["decode_records_per_s"].values())
    assert data["window_events_per_s"] > 0 and data["window_bytes_per_patient"] > 100
    assert {s["batch"] for s in data["scoring"]} == {1, 8, 64, 256, 1024}
    assert any(line.startswith("decode fhir, records/s") for line in lines)


def test_a_process_s_cpu_seconds_grow_with_its_work() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.2
    assert cpu_seconds(2**22 + 12345) == 0.0  # no such process


def test_cpu_per_thousand_events_sums_the_workers() -> None:
    run = WorkerRun(100.0, 0, {}, cpu_s=[3.0, 1.0], measured_events=2000)
    assert run.cpu_s_per_1000 == 2.0


def test_scale_counts_must_be_numbers() -> None:
    result = CliRunner().invoke(bench, ["--scale", "1,two"])
    assert result.exit_code != 0 and "--scale" in result.output
