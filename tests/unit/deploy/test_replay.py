"""The MIMIC-IV demo as FHIR Observations: in time order, ending now, ingestible."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from deploy.replay import mimic_observations
from streams.ingest.decode import decode_record

NOW = 1_795_000_000_000  # 2026-11-18


def test_mimic_demo_replays_as_fhir_observations_ending_now() -> None:
    items = mimic_observations(NOW)
    assert len(items) > 50_000
    times = [t for t, _, _ in items]
    assert times == sorted(times) and max(times) == NOW
    patients = {p for _, p, _ in items}
    assert 100 <= len(patients) <= 310 and all(p.startswith("mimic-") for p in patients)
    received = datetime.fromtimestamp(NOW / 1000, tz=UTC)
    sample = items[-2000:]
    decoded = [decode_record(raw, received_at=received) for _, _, raw in sample]
    ok = [r for r in decoded if r.observations and not r.problems]
    assert len(ok) / len(sample) > 0.9  # what the stream cannot read it dead-letters
    first = orjson.loads(sample[0][2])
    assert first["resourceType"] == "Observation" and first["subject"]["reference"].startswith(
        "Patient/mimic-"
    )
