"""Poison containment: a failing record or state is dead-lettered, the rest still counts."""

from __future__ import annotations

import orjson
import pytest
from factories import cgm

from streams.processing.containment import PatientResult, apply_contained, contained_tick
from streams.processing.pipeline import PatientPipeline
from streams.schemas.observation import Observation
from streams.settings import StreamSettings
from streams.windows.patient import PatientWindow

POISON = 66.6  # a record with this value makes the failing pipeline below raise
STATE_POISON = 77.7  # ... and so does any window holding this value


class FailingPipeline(PatientPipeline):
    """The real pipeline, except that one value in a record or in a window makes it raise."""

    def process(self, patient_id, window, observations, *, arrived_at=None):  # type: ignore[no-untyped-def]
        if window is not None and any(v == STATE_POISON for _, v in window.cgm_series()):
            raise RuntimeError("state bug")
        if any(o.value == POISON for o in observations):
            raise ZeroDivisionError("record bug")
        return super().process(patient_id, window, observations, arrived_at=arrived_at)


@pytest.fixture
def pipeline() -> FailingPipeline:
    return FailingPipeline(StreamSettings())


def on_stored(pipeline: PatientPipeline, raw: bytes, batch: list[Observation]) -> PatientResult:
    """``batch`` applied, contained, to the stored window ``raw`` of syn-p1."""
    return apply_contained(
        pipeline,
        "syn-p1",
        batch,
        load=lambda: PatientWindow.from_bytes(raw),
        stored=lambda: raw,
        arrived_at=0,
    )


def stored_window(pipeline: PatientPipeline, readings: list[Observation]) -> bytes:
    return pipeline.process("syn-p1", None, readings).window.to_bytes()


def test_a_poison_record_is_refused_and_the_others_still_apply(pipeline: FailingPipeline) -> None:
    state = stored_window(pipeline, [cgm(0, 120), cgm(5, 118)])
    batch = [cgm(10, 110), cgm(15, POISON), cgm(20, 100)]
    result = on_stored(pipeline, state, batch)
    assert [o.value for o in result.failed] == [POISON]
    assert result.quarantined is None and result.error == "ZeroDivisionError"
    assert [v for _, v in result.window.cgm_series()] == [120, 118, 110, 100]


def test_without_failure_nothing_changes(pipeline: FailingPipeline) -> None:
    batch = [cgm(0, 120), cgm(5, 118)]
    result = apply_contained(
        pipeline, "syn-p1", batch, load=lambda: None, stored=lambda: None, arrived_at=0
    )
    assert len(result.outputs) == 1 and not result.failed and result.quarantined is None
    assert result.window is result.outputs[0].window


def test_a_state_that_cannot_be_loaded_is_quarantined(pipeline: FailingPipeline) -> None:
    corrupt = b"\x92\x07garbage"
    result = on_stored(pipeline, corrupt, [cgm(0, 120)])
    assert result.quarantined == corrupt and not result.failed
    assert [v for _, v in result.window.cgm_series()] == [120]


def test_a_state_nothing_applies_to_is_quarantined(pipeline: FailingPipeline) -> None:
    state = PatientPipeline(StreamSettings()).process("syn-p1", None, [cgm(0, STATE_POISON)])
    raw = state.window.to_bytes()
    result = on_stored(pipeline, raw, [cgm(5, 110), cgm(10, 105)])
    assert result.quarantined == raw and not result.failed and result.error == "RuntimeError"
    assert [v for _, v in result.window.cgm_series()] == [110, 105]  # a fresh window


def test_a_tick_that_fails_reports_its_error(pipeline: FailingPipeline) -> None:
    def broken() -> PatientWindow:
        raise ValueError("year 10000 is out of range")

    assert contained_tick(pipeline, broken, 0) == "ValueError"
    assert contained_tick(pipeline, lambda: None, 0) is None
    window = PatientWindow("syn-p1")
    ticked = contained_tick(pipeline, lambda: window, 0)
    assert isinstance(ticked, tuple) and ticked[0] is window


def test_a_fault_alarm_opens_and_resolves_after_an_acknowledgement() -> None:
    pipeline = PatientPipeline(StreamSettings())
    window = PatientWindow("syn-p1")
    fault = pipeline.quarantined(window, None, 1_000, "reset", {})
    [opened] = [orjson.loads(a) for a in fault.alerts]
    assert (opened["kind"], opened["transition"], opened["severity"]) == (
        "monitoring_fault",
        "opened",
        "urgent",
    )
    assert not pipeline.tick(window, 2_000).alerts  # open until someone has seen it
    output = pipeline.act(window, opened["alert_id"], "ack", "nurse-7", 3_000)
    assert output is not None and orjson.loads(output.alerts[0])["transition"] == "acknowledged"
    [resolved] = [orjson.loads(a) for a in pipeline.tick(window, 4_000).alerts]
    assert resolved["transition"] == "resolved" and not window.alarms


def test_a_poison_record_alone_leaves_a_healthy_state_untouched(pipeline: FailingPipeline) -> None:
    """Live traffic: a patient's batch is one record. The record is the poison, not the
    state: alarms, baselines and the audit head stay exactly as stored."""
    healthy = PatientPipeline(StreamSettings())
    low = healthy.process("syn-p1", None, [cgm(10, 58), cgm(5, 55), cgm(0, 52)])
    assert low.window.alarms and low.window.audit_seq  # an open alarm, a sealed chain
    raw = low.window.to_bytes()
    result = on_stored(pipeline, raw, [cgm(-5, POISON)])
    assert result.quarantined is None and [o.value for o in result.failed] == [POISON]
    assert result.window.to_bytes() == raw  # unchanged, byte for byte
    assert result.error == "ZeroDivisionError"


def test_a_quarantined_state_closes_its_alarms_and_keeps_its_audit_chain(
    pipeline: FailingPipeline,
) -> None:
    healthy = PatientPipeline(StreamSettings())
    sick = healthy.process("syn-p1", None, [cgm(15, 58), cgm(10, 55), cgm(5, STATE_POISON)])
    raw = sick.window.to_bytes()
    opened = {a.alert_id for a in sick.window.alarms.values()}
    assert opened
    result = on_stored(pipeline, raw, [cgm(0, 110)])
    assert result.quarantined == raw and result.replaced is not None
    assert [v for _, v in result.window.cgm_series()] == [110]
    output = pipeline.quarantined(result.window, result.replaced, 0, "reset", {})
    events = [orjson.loads(a) for a in output.alerts]
    closed = {e["alert_id"] for e in events if e["transition"] == "resolved"}
    assert closed == opened
    assert all("quarantined" in e["reason"] for e in events if e["transition"] == "resolved")
    assert [e["kind"] for e in events if e["transition"] == "opened"] == ["monitoring_fault"]
    # the chain goes on from the quarantined state's head, without a gap
    assert events[0]["audit"]["seq"] == sick.window.audit_seq + 1
    assert events[0]["audit"]["prev"] == sick.window.audit_head.hex()
