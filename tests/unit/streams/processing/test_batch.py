"""The batch step and the checkpoint order, with in-memory fakes of every port (no broker)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fakes import NOW, TOPICS, MemoryState, Record, partition_of
from fakes import StepHarness as Harness

from streams.processing.pipeline import PatientPipeline
from streams.settings import StreamSettings

_offsets = iter(range(10**9))


def cgm(patient: str, minutes_ago: float, value: float, **extra: Any) -> Record:
    key = patient.encode()
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    body = {"patient_id": patient, "code": "99504-3", "value": value, "unit": "mg/dL",
            "effective_at": at, **extra}  # fmt: skip
    return Record(TOPICS.glucose, partition_of(key), next(_offsets), key, orjson.dumps(body))


def tick(partition: int) -> Record:
    return Record(TOPICS.ticks, partition, next(_offsets), None, b'{"tick_ms": 0}')


def low(patient: str, start: int = 20) -> list[Record]:
    return [cgm(patient, start - 5 * i, v) for i, v in enumerate([100, 50, 45, 40])]


async def test_a_batch_alarms_writes_stores_and_acknowledges() -> None:
    h = Harness()
    batch = low("syn-a")
    await h.step(batch)
    await h.checkpoint.drain()
    assert any(a["kind"] == "urgent_low" for a in h.alerts())
    assert sum(line.startswith("glucose,") for line in h.series.lines) == 4
    assert h.state.get(partition_of(b"syn-a"), b"syn-a") is not None
    assert h.acks.acked == batch and not h.crashes
    assert h.monitor.unstored_points == 0 and h.monitor.batches_stored == 1


async def test_a_series_write_that_fails_acknowledges_nothing_and_stores_no_state() -> None:
    h = Harness()
    h.series.fail = ConnectionError("database down")
    await h.step(low("syn-a"))
    with pytest.raises(ConnectionError):
        await h.checkpoint.drain()
    assert any(a["kind"] == "urgent_low" for a in h.alerts())  # the alarm is out anyway
    assert not h.acks.acked and not h.state.data and h.crashes


async def test_a_state_write_that_fails_acknowledges_nothing() -> None:
    h = Harness()
    h.state.fail = ConnectionError("changelog not acknowledged")
    await h.step(low("syn-a"))
    with pytest.raises(ConnectionError):
        await h.checkpoint.drain()
    assert h.series.lines and not h.acks.acked and h.crashes


async def test_a_record_the_broker_refuses_acknowledges_nothing_and_writes_no_series() -> None:
    h = Harness()
    h.records.fail = ConnectionError("broker down")
    await h.step(low("syn-a"))
    with pytest.raises(ConnectionError):
        await h.checkpoint.drain()
    assert not h.series.writes and not h.acks.acked and not h.state.data


async def test_a_crash_before_the_acknowledgement_replays_to_the_same_outputs() -> None:
    patients = ["syn-a", "syn-b", "syn-c"]
    batches = [[cgm(p, 60 - 5 * i, v) for p in patients] for i, v in enumerate(
        [120, 100, 80, 60, 50, 45, 40, 90, 120, 130]
    )]  # fmt: skip
    clean = Harness()
    for batch in batches:
        await clean.step(batch)
    await clean.checkpoint.drain()

    crashed = Harness()
    for batch in batches[:4]:
        await crashed.step(batch)
    await crashed.checkpoint.drain()
    committed = len(crashed.acks.acked)
    crashed.series.fail = ConnectionError("killed")
    for batch in batches[4:7]:  # computed and sent, never stored: then the worker dies
        await crashed.step(batch)
    with pytest.raises(ConnectionError):
        await crashed.checkpoint.drain()
    assert len(crashed.acks.acked) == committed
    # a new worker on the same stored state replays everything not acknowledged
    replay = Harness(state=crashed.state)
    for batch in batches[4:]:
        await replay.step(batch)
    await replay.checkpoint.drain()
    ids = {a["alert_id"] for a in crashed.alerts() + replay.alerts()}
    assert ids == {a["alert_id"] for a in clean.alerts()}
    assert replay.state.data == clean.state.data
    assert sorted(set(crashed.series.lines + replay.series.lines)) == sorted(clean.series.lines)


async def test_later_batches_compute_and_alarm_while_earlier_ones_wait_for_the_database() -> None:
    h = Harness()
    gate = h.series.gate = asyncio.Event()
    first, second = low("syn-a"), low("syn-b")
    await h.step(first)
    await h.step(second)
    assert {a["patient_id"] for a in h.alerts() if a["kind"] == "urgent_low"} == {
        "syn-a",
        "syn-b",
    }
    assert not h.acks.acked and h.monitor.unstored_points >= 8  # 8 readings, then scores
    gate.set()
    await h.checkpoint.drain()
    assert h.acks.acked == first + second  # in order


async def test_beyond_the_bound_the_stream_waits() -> None:
    h = Harness(max_batches=1)
    gate = h.series.gate = asyncio.Event()
    await h.step(low("syn-a"))
    waiting = asyncio.ensure_future(h.step(low("syn-b")))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # backpressure
    gate.set()
    await waiting
    await h.checkpoint.drain()
    assert len(h.acks.acked) == 8


async def test_a_poison_record_is_dead_lettered_and_others_still_alarm() -> None:
    class Failing(PatientPipeline):
        def _observe(self, patient_id: str, *args: Any, **kwargs: Any) -> Any:
            if patient_id == "syn-poison":
                raise ZeroDivisionError
            return super()._observe(patient_id, *args, **kwargs)

    h = Harness(Failing(StreamSettings()))
    poison = cgm("syn-poison", 0, 100)
    await h.step([poison, *low("syn-ctl")])
    await h.checkpoint.drain()
    [letter] = h.letters()
    assert letter["reason"] == "processing" and letter["offset"] == poison.offset
    assert any(a["kind"] == "urgent_low" and a["patient_id"] == "syn-ctl" for a in h.alerts())
    assert len(h.acks.acked) == 5 and h.stats.processing_errors == 1


async def test_a_corrupt_stored_state_is_quarantined() -> None:
    state = MemoryState()
    state.data[partition_of(b"syn-q")] = {b"syn-q": b"\x93\x02garbage"}
    h = Harness(state=state)
    await h.step(low("syn-q"))
    await h.checkpoint.drain()
    kinds = {a["kind"] for a in h.alerts()}
    assert {"monitoring_fault", "urgent_low"} <= kinds
    [letter] = h.letters()
    assert letter["reason"] == "state" and letter["source_topic"] == "patient-windows"
    assert h.state.get(partition_of(b"syn-q"), b"syn-q") != b"\x93\x02garbage"


async def test_ticks_reach_windows_stored_before_a_restart() -> None:
    first = Harness()
    await first.step([cgm("syn-s", 40, 120), cgm("syn-s", 35, 118)])
    await first.checkpoint.drain()
    later = Harness(state=first.state)  # a restarted worker: nothing known yet
    later.step.clock = lambda: NOW + timedelta(minutes=30)
    await later.step([tick(partition_of(b"syn-s"))])
    await later.checkpoint.drain()
    assert any(a["kind"] == "cgm_stale_30" for a in later.alerts())


class CountingTicks(PatientPipeline):
    """The pipeline, counting the patients ticks visit."""

    def __init__(self) -> None:
        super().__init__(StreamSettings())
        self.ticked: list[str] = []

    def _tick(self, state, wall_ms):  # type: ignore[no-untyped-def]
        self.ticked.append(state.patient_id)
        return super()._tick(state, wall_ms)


async def test_ticks_visit_only_patients_with_open_alarms_or_data_about_to_go_stale() -> None:
    pipeline = CountingTicks()
    h = Harness(pipeline)
    fresh = [cgm(f"syn-f{i}", 1, 120) for i in range(50)]  # steady, in range, just sent
    await h.step([*fresh, *low("syn-low")])
    partitions = {r.partition for r in fresh} | {partition_of(b"syn-low")}
    await h.step([tick(p) for p in partitions])
    await h.checkpoint.drain()
    assert pipeline.ticked == ["syn-low"]  # the open urgent low: re-alerts and escalation
    # 14 min later nothing is stale yet; 16 min after the readings every CGM is
    h.step.clock = lambda: NOW + timedelta(minutes=13)
    await h.step([tick(p) for p in partitions])
    assert pipeline.ticked == ["syn-low", "syn-low"]
    h.step.clock = lambda: NOW + timedelta(minutes=15)
    await h.step([tick(p) for p in partitions])
    await h.checkpoint.drain()
    stale = {a["patient_id"] for a in h.alerts() if a["kind"] == "cgm_stale_15"}
    assert stale == {f"syn-f{i}" for i in range(50)} | {"syn-low"}
    # the stale alarms are open now: every tick visits them
    before = len(pipeline.ticked)
    await h.step([tick(p) for p in partitions])
    assert len(pipeline.ticked) - before == 51


async def test_a_patient_seen_again_is_not_decoded_from_the_store_again() -> None:
    h = Harness()
    await h.step([cgm("syn-c", 10, 120)])
    await h.checkpoint.drain()
    partition = partition_of(b"syn-c")
    stored = h.state.data[partition][b"syn-c"]
    h.state.data[partition][b"syn-c"] = b"\x93\x02garbage"  # would quarantine if decoded
    await h.step([cgm("syn-c", 5, 118)])
    await h.checkpoint.drain()
    assert not h.letters() and h.state.data[partition][b"syn-c"] != stored
    h.step.forget()  # partitions revoked: the decoded windows go
    h.state.data[partition][b"syn-c"] = b"\x93\x02garbage"
    await h.step([cgm("syn-c", 1, 119)])
    assert [letter["reason"] for letter in h.letters()] == ["state"]


async def test_when_model_scores_fail_the_rule_alarms_still_go_out_sealed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.scoring.service import ModelScoring
    from streams.settings import ScoringSettings

    scoring = ModelScoring(ScoringSettings(provider="cpu"))
    pipeline = PatientPipeline(StreamSettings(), models=scoring.serving_models())
    h = Harness(pipeline=pipeline)
    h.step.scoring = scoring

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a model family's bug")

    falling = [cgm("syn-m", 60 - 5 * i, 130 - 8 * i) for i in range(9)] + low("syn-m", 15)
    monkeypatch.setattr(pipeline, "_model_scores", broken)
    await h.step(falling)
    await h.checkpoint.drain()
    alerts = h.alerts()
    assert any(a["kind"] == "urgent_low" for a in alerts) and h.stats.processing_errors == 1
    assert all(isinstance(a.get("audit"), dict) for a in alerts)  # every one on the chain
    seqs = [a["audit"]["seq"] for a in alerts]
    assert seqs == list(range(1, len(alerts) + 1))


@pytest.mark.parametrize("readable", [True, False])
async def test_a_quarantine_closes_the_old_alarms_and_the_views_keep_the_new_ones(
    readable: bool,
) -> None:
    """The old state's alarms are closed (explicitly when it can be read, by the views on
    the fault event when not); the alarms the new window opens in the same batch stay open
    on every page."""
    from streams.engine.alert_view import AlertView
    from streams.settings import KafkaSettings

    first = Harness()
    await first.step([cgm("syn-r", 60 - 5 * i, v) for i, v in enumerate([75, 66, 64, 63])])
    await first.checkpoint.drain()
    old_low = [a for a in first.alerts() if a["transition"] == "opened"]
    assert [a["kind"] for a in old_low] == ["low"]
    key, part = b"syn-r", partition_of(b"syn-r")
    if readable:  # a state the pipeline fails on: a value it chokes on
        stored = first.state.get(part, key)
        old_id = old_low[0]["alert_id"]

        class Failing(PatientPipeline):
            def _observe(self, patient_id, state, observations, *rest):  # type: ignore[no-untyped-def]
                if state is not None and any(
                    a.alert_id == old_id for a in state.alarms.alarms.values()
                ):
                    raise RuntimeError("state bug")  # the old state, not the records
                return super()._observe(patient_id, state, observations, *rest)

        broken = Failing(StreamSettings())
        state = MemoryState()
        state.data[part] = {key: stored}
        second = Harness(pipeline=broken, state=state)
    else:
        state = MemoryState()
        state.data[part] = {key: b"\x93\x02garbage"}
        second = Harness(state=state)
    await second.step(low("syn-r"))
    await second.checkpoint.drain()
    view = AlertView(KafkaSettings(), "bedside.alerts")
    for event in first.alerts() + second.alerts():
        assert view.take(orjson.dumps(event)) is None
    opened_now = {e["alert_id"] for e in second.alerts() if e["transition"] == "opened"}
    assert set(view.open) == opened_now  # every alarm the new window opened, and only those
    assert {e["kind"] for e in view.open.values()} >= {"monitoring_fault", "urgent_low"}
    assert view.get(old_low[0]["alert_id"])["state"] == "resolved"  # type: ignore[index]
    assert not second.letters() or all(d["reason"] == "state" for d in second.letters())


async def test_every_event_the_step_writes_conforms_to_its_published_contract() -> None:
    """Alarms, risk events and dead letters, as the batch step writes them, against the JSON
    Schemas in docs/schemas/ (what downstream systems validate with)."""
    from jsonschema import Draft202012Validator

    from streams.contracts import contract_schemas

    schemas = contract_schemas()
    h = Harness()
    poison = Record(TOPICS.glucose, 0, next(_offsets), b"syn-b", b'{"patient_id": 1}')
    await h.step([*low("syn-a"), poison, tick(partition_of(b"syn-a"))])
    await h.checkpoint.drain()
    written = {
        "alerts": h.alerts(),
        "risk": [orjson.loads(v) for v in h.records.on(TOPICS.risk)],
        "deadletter": h.letters(),
    }
    for stem, events in written.items():
        assert events, stem
        validator = Draft202012Validator(schemas[stem])
        for event in events:
            assert event["schema_version"] == schemas[stem]["x-schema-version"]
            assert not list(validator.iter_errors(event)), (stem, event)


async def test_every_record_sent_names_the_input_partition_that_caused_it() -> None:
    """Under exactly-once a record joins its input partition's transaction: alarms and risk
    their patient's partition, a dead letter its record's, a re-routed reading the partition
    it arrived on (not its patient's)."""
    h = Harness()
    home = partition_of(b"syn-a")
    stray = cgm("syn-b", 0, 120)
    elsewhere = (partition_of(b"syn-b") + 1) % 8
    arrived = Record(stray.topic, elsewhere, stray.offset, None, stray.value)  # unkeyed
    garbage = Record(TOPICS.glucose, 5, next(_offsets), b"syn-c", b"{not json")
    await h.step([*low("syn-a"), arrived, garbage])
    await h.checkpoint.drain()
    sent = list(zip(h.records.sent, h.records.sources, strict=True))
    assert {s for (topic, _, _), s in sent if topic == TOPICS.alerts} == {home}
    assert [s for (topic, _, _), s in sent if topic == TOPICS.deadletter] == [5]
    assert [s for (topic, key, _), s in sent if topic == TOPICS.glucose] == [elsewhere]
    assert all(s is not None for _, s in sent)
