"""Time and care-team actions through the pipeline: stale data, escalation, acknowledgements."""

from __future__ import annotations

from datetime import UTC, datetime

import factories
import orjson
from fakes import apply, tick

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
    state, _ = apply(pipeline, "p", None, [cgm(0, 120)], arrived_at=WALL)
    assert transitions(tick(pipeline, state, WALL + 14 * MIN)) == []
    assert transitions(tick(pipeline, state, WALL + 16 * MIN)) == [("cgm_stale_15", "opened")]
    assert sorted(transitions(tick(pipeline, state, WALL + 31 * MIN))) == [
        ("cgm_stale_15", "resolved"),
        ("cgm_stale_30", "opened"),
    ]
    _, back = apply(pipeline, "p", state, [cgm(35, 118)], arrived_at=WALL + 35 * MIN)
    assert ("cgm_stale_30", "resolved") in transitions(back)


def test_ticks_escalate_an_unacknowledged_low_and_an_ack_stops_it() -> None:
    pipeline = PatientPipeline(StreamSettings())
    state = None
    for i, value in enumerate([65, 62]):
        state, _ = apply(pipeline, "p", state, [cgm(5 * i, value)], arrived_at=WALL + 5 * i * MIN)
    assert state is not None and state.alarms.alarms["low"].state == "open"
    escalated = tick(pipeline, state, WALL + 5 * MIN + 15 * MIN)
    assert ("low", "escalated") in transitions(escalated)
    alert_id = state.alarms.alarms["low"].alert_id
    acked = pipeline.act(state, alert_id, "ack", "nurse-7", WALL + 21 * MIN)
    assert acked is not None and transitions(acked) == [("low", "acknowledged")]
    assert ("low", "escalated") not in transitions(tick(pipeline, state, WALL + 60 * MIN))
    assert pipeline.act(state, "unknown", "ack", "nurse-7", WALL) is None
