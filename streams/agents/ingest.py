"""The patient stream: ingest topics in; windows, scores, alerts, time series out.

The patient topics bypass Faust's per-record stream: ``streams.consumer`` hands this module
each fetched batch (up to ``ingest.batch_size`` records) as one list. Per batch: decode
every record (dead-lettering what fails: each record
yields observations or a dead-letter record, never neither); group observations by patient;
load each patient's window once, apply, score, derive alerts, serialise the new windows.
Risk, alert and dead-letter records are sent as the batch is computed. Then, while later
batches are computed (batches are stored in order, each after the one before, up to
``ingest.max_unstored_points`` / ``max_unstored_batches`` of them in flight): once the broker
acknowledged every record, write all points to the time-series server; only when it
accepted them, store the new windows (one table write per patient per batch), wait for
their changelog records and acknowledge the batch's records, whose offsets Faust then
commits. A crash before that replays the batch from the windows stored before it: points
are idempotent and alert ids stable. So a database outage delays the series and the
commits, never the alarms (until the bound is reached: then the stream waits).

A record or a patient state that makes processing fail is contained to that patient
(``streams.containment``): dead-lettered or quarantined, never a stopped worker.

An observation whose patient hashes to another partition than the record's (a Bundle with
several patients, a mis-keyed record) is republished keyed by its patient, so each
patient's window lives in exactly one partition.

The same handler consumes, co-partitioned with the ingest topics, the care teams' actions
(``alert-acks``) and clock ticks (``ticks``, one per owned partition every
``stream.tick_interval_s``, sent by each worker's timer): acknowledgements, snoozes,
re-alerts, escalations and stale-data alarms change windows in the same ordered,
exactly-stored way as observations do.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner
from faust.types import EventT, Message

from ..alerts.actions import AlertAction, decode_action
from ..consumer import acknowledge, deliver_batches
from ..containment import apply_contained, contained_tick, load_window
from ..faust_compat import current_event
from ..ingest.decode import IngestLimits, decode_record
from ..ingest.problems import DeadLetter, DecodeResult, Reason
from ..pipeline import PatientOutput, PatientPipeline
from ..runtime import Runtime
from ..schemas.observation import Kind, Observation
from ..scoring.service import ModelScoring
from ..settings import Settings
from ..sinks.influx import InfluxSink
from ..sinks.kafka import RecordSink
from ..windows.patient import PatientWindow
from .gateway import native_record

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    """Subscribe the patient handler to the ingest topics, alert actions and ticks."""
    topics = settings.topics
    topic_of_kind = {Kind.VITAL: topics.vitals, Kind.GLUCOSE: topics.glucose, Kind.LAB: topics.labs}
    windows = app.Table(
        "patient-windows",
        key_type=bytes,
        value_type=bytes,
        partitions=topics.partitions,
    )
    kinds = {topic: kind for kind, topic in topic_of_kind.items()}
    limits = IngestLimits(settings.ingest.max_record_bytes, settings.ingest.max_entries)
    sink = InfluxSink(settings.influx)
    records = RecordSink(settings.kafka)
    app.service(sink)  # type: ignore[arg-type]  # an instance is accepted too
    app.service(records)  # type: ignore[arg-type]
    stats = runtime.ingest
    scoring = ModelScoring(settings.scoring)
    runtime.scoring = scoring
    pipeline = PatientPipeline(settings.stream, models=scoring.serving_models())
    partitioner = DefaultPartitioner()
    all_partitions = list(range(topics.partitions))
    runtime.windows = windows
    # partition -> patients whose windows live there: what this worker processed, joined
    # with a scan of the table on the partition's first tick (windows from before a restart)
    known: dict[int, set[bytes]] = {}
    scanned: set[int] = set()

    @functools.lru_cache(maxsize=1 << 17)  # murmur2 is pure Python: once per patient
    def partition_of(key: bytes) -> int:
        return int(partitioner(key, all_partitions, all_partitions))

    @app.timer(interval=settings.scoring.reload_interval_s)  # type: ignore[untyped-decorator]
    async def reload_models() -> None:
        """Serve a newer model version as soon as it appears in the model directory."""
        if settings.scoring.models:
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, scoring.store.refresh):
                pipeline.set_models(scoring.serving_models())

    @app.timer(interval=settings.stream.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """A clock tick into every partition this worker owns (ordered with its data)."""
        value = orjson.dumps({"tick_ms": int(time.time() * 1000)})
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.ticks:
                await records.send(topics.ticks, None, value, partition=tp.partition)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget(app: faust.App, revoked: set[object], **kwargs: object) -> None:
        known.clear()  # rebuilt from the table on the next tick of each owned partition
        scanned.clear()

    async def dead_letter(
        result: DecodeResult,
        message: Message,
        value: bytes,
        received_at: datetime,
        *,
        topic: str | None = None,
        key: bytes | None = None,
    ) -> Awaitable[object]:
        if key is None and isinstance(message.key, bytes):
            key = message.key
        letter = DeadLetter.build(
            result,
            value,
            topic=topic or message.topic,
            partition=message.partition,
            offset=None if topic else message.offset,
            key=key,
            received_at=received_at,
        )
        stats.dead_letters[letter.reason.value] += 1
        log.info(
            "dead-lettered %s[%d]@%d: %s (%d problems)",
            message.topic,
            message.partition,
            message.offset,
            letter.reason.value,
            len(letter.problems),
        )
        return await records.send(
            topics.deadletter, key=key, value=letter.model_dump_json().encode()
        )

    # windows computed by a batch whose effects are still being stored:
    # key -> (batch, window, the window's bytes as that batch stores them)
    unstored: dict[bytes, tuple[int, PatientWindow, bytes]] = {}
    storing: asyncio.Future[None] | None = None  # the newest batch being stored
    inflight: collections.deque[tuple[asyncio.Future[None], int]] = collections.deque()
    monitor = runtime.monitor
    monitor.sink = sink
    batch_numbers = itertools.count()

    async def process_batch(messages: Sequence[Message]) -> None:
        nonlocal storing
        received_at = datetime.now(UTC)
        wall_ms = int(received_at.timestamp() * 1000)
        pending: list[Awaitable[object]] = []
        # partition -> (an event of it, patient -> observations)
        groups: dict[int, tuple[EventT[bytes], dict[str, list[Observation]]]] = {}
        origin: dict[int, Message] = {}  # id(observation) -> its record (dead letters)
        actions: list[tuple[EventT[bytes], AlertAction, Message]] = []
        ticks: dict[int, tuple[EventT[bytes], int]] = {}
        for message in messages:
            value = value_of(message)
            key = message.key if isinstance(message.key, bytes) else None
            topic = message.topic
            if topic == topics.ticks:
                ticks[message.partition] = (event_of(message), wall_ms)
                continue
            if topic == topics.alert_acks:
                action = decode_action(value)
                if isinstance(action, DecodeResult):
                    pending.append(await dead_letter(action, message, value, received_at))
                elif partition_of(action.patient_id.encode()) != message.partition:
                    stats.rerouted += 1
                    pending.append(
                        await records.send(topics.alert_acks, action.patient_id.encode(), value)
                    )
                else:
                    actions.append((event_of(message), action, message))
                continue
            result = decode_record(
                value,
                received_at=received_at,
                topic_kind=kinds.get(topic),
                key=key,
                limits=limits,
            )
            stats.records += 1
            stats.observations += len(result.observations)
            if result.problems:
                pending.append(await dead_letter(result, message, value, received_at))
            group = groups.get(message.partition)
            if group is None:
                group = groups[message.partition] = (event_of(message), {})
            patients = group[1]
            for observation in result.observations:
                pid = observation.patient_id.encode()
                if partition_of(pid) != message.partition:
                    # another patient's partition owns its window: route it there
                    stats.rerouted += 1
                    pending.append(
                        await records.send(
                            topic_of_kind[observation.kind],
                            key=pid,
                            value=native_record(observation),
                        )
                    )
                    continue
                origin[id(observation)] = message
                observations = patients.get(observation.patient_id)
                if observations is None:
                    patients[observation.patient_id] = [observation]
                else:
                    observations.append(observation)

        current: dict[bytes, tuple[EventT[bytes], PatientWindow]] = {}  # windows touched

        def stored(event: EventT[bytes], key: bytes) -> bytes | None:
            """The patient's state as of the previous batch (what a failure restores)."""
            if key in unstored:
                return unstored[key][2]
            with current_event(event):
                state: bytes | None = windows.get(key)
            return state

        def load(event: EventT[bytes], key: bytes) -> PatientWindow | None:
            if key in current:
                return current[key][1]
            if key in unstored:  # the previous batch's, still being stored
                return unstored[key][1]
            return load_window(stored(event, key))

        async def quarantine(
            event: EventT[bytes], key: bytes, state: bytes, error: str, window: PatientWindow
        ) -> PatientOutput:
            """Dead-letter a patient's unusable state; the patient restarts with an alarm."""
            stats.quarantined += 1
            log.error(
                "patient state in %s[%d] unusable (%s): quarantined to %s, window reset",
                windows.name,
                event.message.partition,
                error,
                topics.deadletter,
            )
            problem = DecodeResult.refused(
                Reason.STATE, f"stored patient window could not be used ({error}); reset"
            )
            pending.append(
                await dead_letter(
                    problem, event.message, state, received_at, topic=windows.name, key=key
                )
            )
            return pipeline.fault(
                window,
                wall_ms,
                "Monitoring fault: this patient's stored state could not be processed and was "
                "reset; alarms restart from new readings. Review recent values by hand.",
                {"error": error, "quarantined_to": topics.deadletter},
            )

        outputs: list[tuple[bytes, PatientOutput]] = []
        for event, patients in groups.values():
            for patient_id, observations in patients.items():
                key = patient_id.encode()
                applied = apply_contained(
                    pipeline,
                    patient_id,
                    observations,
                    load=functools.partial(load, event, key),
                    stored=functools.partial(stored, event, key),
                    arrived_at=wall_ms,
                )
                window = applied.window
                current[key] = (event, window)
                known.setdefault(event.message.partition, set()).add(key)
                for output in applied.outputs:
                    outputs.append((key, output))
                    stats.count(output.applied)
                    runtime.quality.cgm_readings += output.cgm_inserted
                    for judgement in output.quality:
                        runtime.quality.add(judgement)
                if applied.quarantined is not None:
                    outputs.append(
                        (
                            key,
                            await quarantine(
                                event, key, applied.quarantined, applied.error or "", window
                            ),
                        )
                    )
                if applied.failed:
                    stats.processing_errors += len(applied.failed)
                    log.error(
                        "applying %d observations of a patient in %s[%d] failed (%s): "
                        "dead-lettered, the patient's window kept as before them",
                        len(applied.failed),
                        event.message.topic,
                        event.message.partition,
                        applied.error,
                    )
                    problem = DecodeResult.refused(
                        Reason.PROCESSING,
                        f"applying the record failed ({applied.error}); please report",
                    )
                    for message in {
                        id(origin[id(o)]): origin[id(o)] for o in applied.failed
                    }.values():
                        pending.append(
                            await dead_letter(problem, message, value_of(message), received_at)
                        )
        # one scoring round for the whole batch: the micro-batcher groups it across patients
        requests = [r for _, output in outputs for r in output.requests]
        if requests:
            results = await scoring.score(requests)
            for _, output in outputs:
                if output.requests:
                    mine = results[: len(output.requests)]
                    results = results[len(output.requests) :]
                    try:
                        pipeline.finish(output, mine)
                    except Exception as exc:  # noqa: BLE001 - the rule alarms still go out
                        stats.processing_errors += 1
                        log.error("model scores of a patient failed (%s)", type(exc).__name__)
                        output.alerts = [orjson.dumps(e) for e in output.events]
        for event, action, message in actions:
            key = action.patient_id.encode()
            try:
                target = load(event, key)
                done = target and pipeline.act(
                    target, action.alert_id, action.action, action.by, wall_ms, action.minutes
                )
            except Exception as exc:  # noqa: BLE001 - this action is refused, the rest count
                stats.processing_errors += 1
                problem = DecodeResult.refused(
                    Reason.PROCESSING, f"applying the action failed ({type(exc).__name__})"
                )
                pending.append(await dead_letter(problem, message, value_of(message), received_at))
                continue
            if not done or target is None:
                stats.actions_ignored += 1
                log.info("alert action on %s ignored: not open", action.alert_id)
                continue
            stats.actions += 1
            outputs.append((key, done))
            current[key] = (event, target)
        for partition, (event, now) in ticks.items():
            stats.ticks += 1
            if partition not in scanned:
                with current_event(event):
                    keys = [k for k in windows.keys() if partition_of(k) == partition]
                known.setdefault(partition, set()).update(keys)
                scanned.add(partition)
            for key in known.get(partition, ()):
                ticked = contained_tick(pipeline, functools.partial(load, event, key), now)
                if ticked is None:
                    continue
                if isinstance(ticked, str):  # the stored state makes ticks fail
                    window = PatientWindow(key.decode("utf-8", "replace"))
                    state = stored(event, key) or b""
                    output = await quarantine(event, key, state, ticked, window)
                else:
                    window, output = ticked
                if output.alerts:
                    outputs.append((key, output))
                    current[key] = (event, window)
        lines: list[str] = []
        for key, output in outputs:
            lines.extend(output.lines)
            if output.risk is not None:
                pending.append(await records.send(topics.risk, key=key, value=output.risk))
            for alert in output.alerts:
                stats.alerts += 1
                pending.append(await records.send(topics.alerts, key=key, value=alert))
        # the state as of this batch, serialised now: the next batch may change the windows
        # while this one is being stored
        states = {key: (event, window.to_bytes()) for key, (event, window) in current.items()}
        sequence = next(batch_numbers)
        for key, (_, window) in current.items():
            unstored[key] = (sequence, window, states[key][1])
        # batches are stored in order, each after the one before; the next one is computed
        # (and its alarms sent) meanwhile, so a database outage delays series, not alarms
        previous, storing = storing, None
        storing = asyncio.ensure_future(store(previous, sequence, lines, pending, states, messages))
        storing.add_done_callback(crash_on_failure)
        inflight.append((storing, len(lines)))
        monitor.unstored_points += len(lines)
        while inflight and inflight[0][0].done():
            inflight.popleft()
        # bounded: beyond this much unstored work the stream waits (backpressure)
        while inflight and (
            monitor.unstored_points > settings.ingest.max_unstored_points
            or len(inflight) > settings.ingest.max_unstored_batches
        ):
            await inflight.popleft()[0]

    async def store(
        previous: asyncio.Future[None] | None,
        sequence: int,
        lines: list[str],
        pending: list[Awaitable[object]],
        states: dict[bytes, tuple[EventT[bytes], bytes]],
        messages: Sequence[Message],
    ) -> None:
        """Write a computed batch's effects; acknowledge its records only when all are safe."""
        # every record (alarms, risk, dead letters) acknowledged by the broker
        await asyncio.gather(*pending)
        if previous is not None:
            await previous  # in order: state and offsets never overtake an earlier batch
        # accepted by the time-series server (retried through outages)
        await sink.write(lines)
        # only then the new state. Not through ``windows[key] = ...``: that queues the
        # changelog record without a way to wait for it, and Faust commits offsets without
        # waiting for those (``producer.flush()`` gives up on a queue that drains slower than
        # one record per 100 ms): a worker killed after such a commit came back without that
        # batch's windows. Here the records are sent and awaited before the batch's records
        # are acknowledged.
        changelog = []
        for key, (event, state) in states.items():
            with current_event(event):  # the store's partition
                windows.data[key] = state
            changelog.append(windows.send_changelog(event.message.partition, key, state))
        await asyncio.gather(*changelog)
        acknowledge(app.consumer, messages)
        monitor.stored(len(lines))
        for key in states:
            if unstored.get(key, (None,))[0] == sequence:
                del unstored[key]

    def crash_on_failure(task: asyncio.Future[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.critical("storing a batch failed; stopping the worker", exc_info=exc)
        asyncio.ensure_future(app.crash(exc))  # type: ignore[arg-type]

    def value_of(message: Message) -> bytes:
        return message.value if isinstance(message.value, bytes) else b""

    def event_of(message: Message) -> EventT[bytes]:
        """An event of the record's partition: Faust's tables take the partition from it."""
        return faust.Event(app, message.key, message.value, None, message)

    deliver_batches(app, topics.patient_stream, process_batch)
