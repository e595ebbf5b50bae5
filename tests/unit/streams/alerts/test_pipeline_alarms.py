"""Time and care-team actions through the pipeline: stale data, escalation, acknowledgements."""

from __future__ import annotations

from datetime import UTC, datetime

import factories
import orjson

from streams.processing.pipeline import PatientPipeline
from streams.schemas.observation import Observation
from streams.settings import StreamSettings

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
WALL = int(T0.timestamp() * 1000) + 1_000  # the data arrived a second after its event time
MIN = 60_000


def cgm(minutes: float, value: float) -> Observation:
    return factories.cgm(minutes, value, patient="p")


def transitions(output) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e["kind"], e["transition"]) for e in map(orjson.loads, output.alerts)]


def test_stale_cgm_opens_moves_to_30_and_resolves_when_data_returns() -> None:
    pipeline = PatientPipeline(StreamSettings())
    window = pipeline.process("p", None, [cgm(0, 120)], arrived_at=WALL).window
    assert transitions(pipeline.tick(window, WALL + 14 * MIN)) == []
    assert transitions(pipeline.tick(window, WALL + 16 * MIN)) == [("cgm_stale_15", "opened")]
    assert sorted(transitions(pipeline.tick(window, WALL + 31 * MIN))) == [
        ("cgm_stale_15", "resolved"),
        ("cgm_stale_30", "opened"),
    ]
    back = pipeline.process("p", window, [cgm(35, 118)], arrived_at=WALL + 35 * MIN)
    assert ("cgm_stale_30", "resolved") in transitions(back)


def test_ticks_escalate_an_unacknowledged_low_and_an_ack_stops_it() -> None:
    pipeline = PatientPipeline(StreamSettings())
    window = None
    for i, value in enumerate([65, 62]):
        window = pipeline.process(
            "p", window, [cgm(5 * i, value)], arrived_at=WALL + 5 * i * MIN
        ).window
    assert window is not None and window.alarms["low"].state == "open"
    escalated = pipeline.tick(window, WALL + 5 * MIN + 15 * MIN)
    assert ("low", "escalated") in transitions(escalated)
    alert_id = window.alarms["low"].alert_id
    acked = pipeline.act(window, alert_id, "ack", "nurse-7", WALL + 21 * MIN)
    assert acked is not None and transitions(acked) == [("low", "acknowledged")]
    assert ("low", "escalated") not in transitions(pipeline.tick(window, WALL + 60 * MIN))
    assert pipeline.act(window, "unknown", "ack", "nurse-7", WALL) is None
