"""``bedside bench --parts-only`` runs without a stack and prints every part."""

from __future__ import annotations

import json

from click.testing import CliRunner

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
