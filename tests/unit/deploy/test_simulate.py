"""The device simulator: a deterministic cohort whose every format the stream can ingest."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from deploy.demo import alarm_quality
from deploy.simulate import build_cohort, encode, plan
from streams.ingest.decode import decode_record
from streams.settings import get_settings

END = int(datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp() * 1000)


def test_cohort_is_deterministic_with_cgm_vitals_and_truth() -> None:
    a = build_cohort(4, 6, seed=3, end_ms=END)
    b = build_cohort(4, 6, seed=3, end_ms=END)
    assert a.readings == b.readings and a.truth == b.truth
    codes = {r.code for r in a.readings}
    assert "99504-3" in codes and "8867-4" in codes  # CGM for all, vitals for every third
    assert all(a.start_ms <= r.t_ms <= END for r in a.readings)
    assert {r.patient_id for r in a.readings if r.code == "8867-4"} == {"sim-0000", "sim-0003"}


def test_every_format_decodes_to_the_same_observation() -> None:
    cohort = build_cohort(1, 2, seed=3, end_ms=END)
    cgm = next(r for r in cohort.readings if r.code == "99504-3")
    values = set()
    for fmt in ("native", "fhir", "nightscout"):
        raw = encode(cgm, fmt, 0, "e-1")
        at = datetime.fromtimestamp(END / 1000, tz=UTC)
        result = decode_record(raw, received_at=at, key=cgm.patient_id.encode())
        assert not result.problems, (fmt, result.problems)
        (obs,) = result.observations
        assert obs.patient_id == cgm.patient_id and obs.code == "99504-3"
        assert int(obs.effective_at.timestamp() * 1000) == cgm.t_ms
        values.add(round(obs.value))
    assert len(values) == 1


def test_faults_are_injected_and_counted() -> None:
    cohort = build_cohort(6, 6, seed=3, end_ms=END)
    the_plan = plan(cohort, get_settings(), "mixed", "default", seed=3)
    counts = the_plan.counts
    assert counts["records"] == len(cohort.readings)
    assert counts["late"] > 0 and counts["duplicates"] >= 0
    assert len(the_plan.sends) == counts["records"] + counts["duplicates"] + counts["malformed"]
    clean = plan(cohort, get_settings(), "native", "none", seed=3)
    assert clean.counts == {
        "records": len(cohort.readings),
        "duplicates": 0,
        "late": 0,
        "malformed": 0,
    }
    first = orjson.loads(clean.sends[0][3])
    assert first["source"] == "bedside-sim"


def test_alarm_quality_against_ground_truth() -> None:
    truth = [{"patient_id": "p", "kind": "hypoglycaemia", "onset": "2026-11-24T10:30:00+00:00"}]
    opened = [
        {"patient_id": "p", "kind": "predicted_low", "opened_at": "2026-11-24T10:10:00+00:00"},
        {"patient_id": "p", "kind": "predicted_low", "opened_at": "2026-11-24T08:00:00+00:00"},
    ]
    row = alarm_quality(opened, truth)["predicted_low"]
    assert (row["alarms"], row["precision"], row["recall"], row["median_lead_min"]) == (
        2,
        0.5,
        1.0,
        20.0,
    )


def test_news2_alarms_are_judged_against_the_deterioration_events() -> None:
    truth = [{"patient_id": "p", "kind": "deterioration", "event": "2026-11-24T12:00:00+00:00"}]
    opened = [
        {"patient_id": "p", "kind": "news2_medium", "opened_at": "2026-11-24T09:00:00+00:00"},
        {"patient_id": "q", "kind": "news2_high", "opened_at": "2026-11-24T09:00:00+00:00"},
    ]
    table = alarm_quality(opened, truth)
    medium, high = table["news2_medium"], table["news2_high"]
    assert (medium["alarms"], medium["precision"], medium["recall"]) == (1, 1.0, 1.0)
    assert medium["median_lead_min"] == 180.0
    assert (high["alarms"], high["precision"], high["recall"]) == (1, 0.0, 0.0)
    assert table["deterioration"]["alarms"] == 0  # the model's alarm: not enabled here
