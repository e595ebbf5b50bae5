"""Poison containment: a failing record or state is dead-lettered, the rest still counts."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from factories import cgm
from fakes import apply, tick

from streams.processing import codec
from streams.processing.outputs import PatientResult
from streams.processing.pipeline import PatientBatch, PatientPipeline
from streams.processing.state import PatientState
from streams.schemas.observation import Observation
from streams.settings import StreamSettings

POISON = 66.6  # a record with this value makes the failing pipeline below raise
STATE_POISON = 77.7  # ... and so does any state holding this value


class FailingPipeline(PatientPipeline):
    """The real pipeline, except that one value in a record or in a state makes applying
    observations raise."""

    def _observe(self, patient_id, state, observations, arrived_at=None):  # type: ignore[no-untyped-def]
        if state is not None and any(v == STATE_POISON for _, v in state.window.cgm_series()):
            raise RuntimeError("state bug")
        if any(o.value == POISON for o in observations):
            raise ZeroDivisionError("record bug")
        return super()._observe(patient_id, state, observations, arrived_at)


@pytest.fixture
def pipeline() -> FailingPipeline:
    return FailingPipeline(StreamSettings())


def on_stored(pipeline: PatientPipeline, raw: bytes, batch: list[Observation]) -> PatientResult:
    """``batch`` applied, contained, to the stored state ``raw`` of syn-p1."""
    patient = PatientBatch("syn-p1", batch, load=lambda: codec.decode(raw), stored=lambda: raw)
    [result] = asyncio.run(pipeline.observations([patient], arrived_at=0))
    return result


def stored_state(pipeline: PatientPipeline, readings: list[Observation]) -> bytes:
    return codec.encode(apply(pipeline, "syn-p1", None, readings)[0])


def cgm_of(result: PatientResult) -> list[float]:
    assert result.state is not None
    return [v for _, v in result.state.window.cgm_series()]


def test_a_poison_record_is_refused_and_the_others_still_apply(pipeline: FailingPipeline) -> None:
    state = stored_state(pipeline, [cgm(0, 120), cgm(5, 118)])
    batch = [cgm(10, 110), cgm(15, POISON), cgm(20, 100)]
    result = on_stored(pipeline, state, batch)
    assert [o.value for o in result.failed] == [POISON]
    assert result.quarantined is None and result.error == "ZeroDivisionError"
    assert cgm_of(result) == [120, 118, 110, 100]
    assert len(result.outputs) == 2  # one per record that applied


def test_without_failure_nothing_changes(pipeline: FailingPipeline) -> None:
    batch = [cgm(0, 120), cgm(5, 118)]
    patient = PatientBatch("syn-p1", batch, load=lambda: None, stored=lambda: None)
    [result] = asyncio.run(pipeline.observations([patient], arrived_at=0))
    assert len(result.outputs) == 1 and not result.failed and result.quarantined is None
    assert cgm_of(result) == [120, 118]


def test_a_state_that_cannot_be_loaded_is_quarantined(pipeline: FailingPipeline) -> None:
    corrupt = b"\x92\x07garbage"
    result = on_stored(pipeline, corrupt, [cgm(0, 52), cgm(5, 50)])
    assert result.quarantined == corrupt and not result.failed
    assert cgm_of(result) == [52, 50]
    fault, *applied = (orjson.loads(a) for o in result.outputs for a in o.alerts)
    assert (
        fault["kind"] == "monitoring_fault" and fault["evidence"]["earlier_alarms"] == "unreadable"
    )
    assert applied and all(e["kind"] != "monitoring_fault" for e in applied)
    # the fault first, then the new readings' events: one chain, in order
    assert [e["audit"]["seq"] for e in [fault, *applied]] == list(range(1, len(applied) + 2))


def test_a_state_nothing_applies_to_is_quarantined(pipeline: FailingPipeline) -> None:
    raw = stored_state(PatientPipeline(StreamSettings()), [cgm(0, STATE_POISON)])
    result = on_stored(pipeline, raw, [cgm(5, 110), cgm(10, 105)])
    assert result.quarantined == raw and not result.failed and result.error == "RuntimeError"
    assert cgm_of(result) == [110, 105]  # a fresh state


class FailingTicks(PatientPipeline):
    def _tick(self, state, wall_ms):  # type: ignore[no-untyped-def]
        raise ValueError("year 10000 is out of range")


def test_a_tick_that_fails_quarantines_the_state() -> None:
    pipeline = PatientPipeline(StreamSettings())
    state, _ = apply(pipeline, "syn-p1", None, [cgm(0, 60), cgm(5, 58)])
    raw = codec.encode(state)
    assert pipeline.tick("syn-p1", lambda: None, lambda: None, 0) is None
    ticked = FailingTicks(StreamSettings()).tick("syn-p1", lambda: state, lambda: raw, 0)
    assert ticked is not None and ticked.quarantined == raw and ticked.error == "ValueError"
    events = [orjson.loads(a) for o in ticked.outputs for a in o.alerts]
    assert {e["transition"] for e in events if e["kind"] == "low"} == {"resolved"}
    assert events[-1]["kind"] == "monitoring_fault"
    assert events[0]["audit"]["seq"] == state.audit.seq + 1  # the chain goes on


def test_a_fault_alarm_opens_and_resolves_after_an_acknowledgement() -> None:
    pipeline = PatientPipeline(StreamSettings())
    state = PatientState.new("syn-p1")
    fault = pipeline.quarantined(state, None, 1_000, "reset")
    [opened] = [orjson.loads(a) for a in fault.alerts]
    assert (opened["kind"], opened["transition"], opened["severity"]) == (
        "monitoring_fault",
        "opened",
        "urgent",
    )
    assert not tick(pipeline, state, 2_000).alerts  # open until someone has seen it
    output = pipeline.act(state, opened["alert_id"], "ack", "nurse-7", 3_000)
    assert output is not None and orjson.loads(output.alerts[0])["transition"] == "acknowledged"
    [resolved] = [orjson.loads(a) for a in tick(pipeline, state, 4_000).alerts]
    assert resolved["transition"] == "resolved" and not state.alarms.alarms


def test_a_poison_record_alone_leaves_a_healthy_state_untouched(pipeline: FailingPipeline) -> None:
    """Live traffic: a patient's batch is one record. The record is the poison, not the
    state: alarms, baselines and the audit head stay exactly as stored."""
    low, _ = apply(
        PatientPipeline(StreamSettings()), "syn-p1", None, [cgm(10, 58), cgm(5, 55), cgm(0, 52)]
    )
    assert low.alarms.alarms and low.audit.seq  # an open alarm, a sealed chain
    raw = codec.encode(low)
    result = on_stored(pipeline, raw, [cgm(-5, POISON)])
    assert result.quarantined is None and [o.value for o in result.failed] == [POISON]
    assert result.state is not None and codec.encode(result.state) == raw  # byte for byte
    assert result.error == "ZeroDivisionError" and result.outputs == []


def test_a_quarantined_state_closes_its_alarms_and_keeps_its_audit_chain(
    pipeline: FailingPipeline,
) -> None:
    healthy = PatientPipeline(StreamSettings())
    sick, _ = apply(healthy, "syn-p1", None, [cgm(15, 58), cgm(10, 55), cgm(5, STATE_POISON)])
    raw = codec.encode(sick)
    opened = {a.alert_id for a in sick.alarms.alarms.values()}
    assert opened
    result = on_stored(pipeline, raw, [cgm(0, 110)])
    assert result.quarantined == raw
    assert cgm_of(result) == [110]
    fault, *applied = result.outputs
    events = [orjson.loads(a) for a in fault.alerts]
    closed = {e["alert_id"] for e in events if e["transition"] == "resolved"}
    assert closed == opened
    assert all("quarantined" in e["reason"] for e in events if e["transition"] == "resolved")
    assert [e["kind"] for e in events if e["transition"] == "opened"] == ["monitoring_fault"]
    assert events[-1]["evidence"]["earlier_alarms"] == "closed"
    # the chain goes on from the quarantined state's head, without a gap, in publish order
    assert events[0]["audit"]["seq"] == sick.audit.seq + 1
    assert events[0]["audit"]["prev"] == sick.audit.head.hex()
    later = [orjson.loads(a) for o in applied for a in o.alerts]
    seqs = [e["audit"]["seq"] for e in events + later]
    assert seqs == list(range(sick.audit.seq + 1, sick.audit.seq + 1 + len(seqs)))


class FailingModels(PatientPipeline):
    def _model_scores(self, state, observed, scored):  # type: ignore[no-untyped-def]
        raise OverflowError("a model's output out of range")


def test_when_the_models_part_fails_the_rule_alarms_still_go_out_sealed() -> None:
    state, output = apply(FailingModels(StreamSettings()), "syn-p1", None, [cgm(0, 52), cgm(5, 50)])
    assert output.model_error == "OverflowError" and output.risk is None
    events = [orjson.loads(a) for a in output.alerts]
    assert events and all("audit" in e for e in events)
    assert state.audit.seq == events[-1]["audit"]["seq"]
