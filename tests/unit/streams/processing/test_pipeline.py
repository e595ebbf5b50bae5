"""The per-patient pipeline: scores, alert transitions with stable ids, output lines."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from factories import cgm, vital
from fakes import apply

from streams.processing.pipeline import PatientPipeline
from streams.schemas.observation import Observation
from streams.settings import StreamSettings

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def run(pipeline: PatientPipeline, batches: list[list[Observation]]) -> list[dict[str, object]]:
    state, events = None, []
    for batch in batches:
        state, output = apply(pipeline, "syn-p1", state, batch)
        events += [orjson.loads(a) for a in output.alerts]
    return events


def test_low_opens_once_escalates_and_resolves_with_stable_ids() -> None:
    pipeline = PatientPipeline(StreamSettings())
    values = [130, 105, 66, 64, 52, 50, 80, 95, 110]
    batches = [[cgm(5 * i, v)] for i, v in enumerate(values)]
    events = run(pipeline, batches)
    summary = [(e["kind"], e["state"]) for e in events]
    assert ("predicted_low", "open") in summary
    opened = [e["kind"] for e in events if e["transition"] == "opened"]
    assert opened.count("low") == 1
    assert ("urgent_low", "open") in summary and ("urgent_low", "resolved") in summary
    low_open = next(e for e in events if e["kind"] == "low" and e["state"] == "open")
    # debounced: the second reading below 70 opens it
    assert "64 mg/dL" in low_open["reason"] and low_open["transition"] == "opened"
    assert [r["mg_dl"] for r in low_open["evidence"]["recent_cgm"]][-1] == 64
    urgent = next(e for e in events if e["kind"] == "urgent_low")
    assert "50 mg/dL" in urgent["reason"] and urgent["severity"] == "critical"
    again = run(PatientPipeline(StreamSettings()), batches)
    assert [e["alert_id"] for e in again] == [e["alert_id"] for e in events]
    resolved = next(e for e in events if e["kind"] == "low" and e["state"] == "resolved")
    assert resolved["alert_id"] == low_open["alert_id"]


def test_per_patient_glucose_targets() -> None:
    settings = StreamSettings(
        glucose_targets={"syn-p1": {"urgent_low": 60, "low": 90, "high": 200, "urgent_high": 300}}
    )
    events = run(PatientPipeline(settings), [[cgm(0, 85)], [cgm(5, 84)]])
    assert [(e["kind"], e["state"]) for e in events] == [("low", "open")]


def test_news2_high_alert_with_reason_and_risk_event() -> None:
    pipeline = PatientPipeline(StreamSettings())
    batch = [
        vital("9279-1", 0, 26),
        vital("59408-5", 0, 90),
        vital("3151-8", 0, 2),
        vital("8480-6", 0, 95),
        vital("8867-4", 0, 120),
        vital("67775-7", 0, 0),
        vital("8310-5", 0, 38.5),
    ]
    _, output = apply(pipeline, "syn-p1", None, batch)
    [alert] = [orjson.loads(a) for a in output.alerts]
    assert alert["kind"] == "news2_high" and alert["severity"] == "critical"
    assert alert["score"] == 3 + 3 + 2 + 2 + 2 + 0 + 1
    assert alert["reason"].startswith("NEWS2 13 (high)")
    risk = orjson.loads(output.risk or b"{}")
    assert {s["name"] for s in risk["scores"]} == {"news2"}
    assert any(
        line.startswith("risk,patient_id=syn-p1,score=news2 value=13.0") for line in output.lines
    )


def test_duplicates_produce_no_new_scores() -> None:
    pipeline = PatientPipeline(StreamSettings())
    first, _ = apply(pipeline, "syn-p1", None, [cgm(0, 100)])
    _, again = apply(pipeline, "syn-p1", first, [cgm(0, 100)])
    assert again.risk is None and again.alerts == [] and again.lines == []


def test_news2_max_age_comes_from_settings() -> None:
    pipeline = PatientPipeline(StreamSettings(news2_max_age_s=600))
    first, _ = apply(pipeline, "syn-p1", None, [vital("9279-1", 0, 26)])
    _, later = apply(pipeline, "syn-p1", first, [vital("8867-4", 20, 70)])
    [news2] = [s for s in orjson.loads(later.risk or b"{}")["scores"] if s["name"] == "news2"]
    assert "respiratory_rate" in news2["missing"]  # 20 min old, over the 10 min limit


def test_rate_of_change_alarms_are_range_gated_and_debounced() -> None:
    # falling 3 mg/dL/min towards the low range: alarms after two readings
    falling = run(
        PatientPipeline(StreamSettings()),
        [[cgm(5 * i, v)] for i, v in enumerate([150, 135, 120, 105, 90])],
    )
    opened = [e for e in falling if e["transition"] == "opened" and e["kind"] == "falling_fast"]
    assert len(opened) == 1 and "falling 3.0 mg/dL/min" in opened[0]["reason"]
    # the same fall from a high value (treatment working) does not alarm
    high = run(
        PatientPipeline(StreamSettings()),
        [[cgm(5 * i, v)] for i, v in enumerate([260, 245, 230, 215, 200])],
    )
    assert not [e for e in high if e["kind"] == "falling_fast"]
