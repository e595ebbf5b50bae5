"""The patient stream: ingest topics in; windows, scores, alerts, time series out.

Per batch (``take_events``): decode every record (dead-lettering what fails: each record
yields observations or a dead-letter record, never neither); group observations by patient;
load each patient's window once, apply, score, derive alerts; write all points to the
time-series server and send risk, alert and dead-letter records; only when the server
accepted the points and the broker every record, store the new windows (one table write
per patient per batch) and let Faust acknowledge the batch's offsets. A crash before that
replays the batch: points are idempotent and alert ids stable.

An observation whose patient hashes to another partition than the record's (a Bundle with
several patients, a mis-keyed record) is republished keyed by its patient, so each
patient's window lives in exactly one partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import EventT

from ..faust_compat import current_event, raw_topic
from ..ingest.decode import IngestLimits, decode_record
from ..ingest.problems import DeadLetter
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
    """Subscribe the ingest agent to the three ingest topics."""
    topics = settings.topics
    source = raw_topic(app, *topics.ingest)
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

    @app.timer(interval=settings.scoring.reload_interval_s)  # type: ignore[untyped-decorator]
    async def reload_models() -> None:
        """Serve a newer model version as soon as it appears in the model directory."""
        if settings.scoring.models:
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, scoring.store.refresh):
                pipeline.set_models(scoring.serving_models())

    @app.agent(source, name="bedside.ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.ingest.batch_size, within=settings.ingest.batch_within_s
        )
        async for events in batches:
            await process_batch(events)

    async def process_batch(events: Sequence[EventT[bytes]]) -> None:
        received_at = datetime.now(UTC)
        pending: list[Awaitable[object]] = []
        # partition -> (an event of it, patient -> observations)
        groups: dict[int, tuple[EventT[bytes], dict[str, list[Observation]]]] = {}
        for event in events:
            message = event.message
            value = message.value if isinstance(message.value, bytes) else b""
            key = message.key if isinstance(message.key, bytes) else None
            result = decode_record(
                value,
                received_at=received_at,
                topic_kind=kinds.get(message.topic),
                key=key,
                limits=limits,
            )
            stats.records += 1
            stats.observations += len(result.observations)
            if result.problems:
                letter = DeadLetter.build(
                    result,
                    value,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
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
                pending.append(
                    await records.send(
                        topics.deadletter, key=key, value=letter.model_dump_json().encode()
                    )
                )
            patients = groups.setdefault(message.partition, (event, {}))[1]
            for observation in result.observations:
                pid = observation.patient_id.encode()
                if partitioner(pid, all_partitions, all_partitions) != message.partition:
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
                patients.setdefault(observation.patient_id, []).append(observation)
        outputs: list[tuple[EventT[bytes], bytes, PatientOutput]] = []
        for event, patients in groups.values():
            for patient_id, observations in patients.items():
                key = patient_id.encode()
                with current_event(event):
                    stored = windows.get(key)
                window = PatientWindow.from_bytes(stored) if stored else None
                output = pipeline.process(patient_id, window, observations)
                outputs.append((event, key, output))
                stats.count(output.applied)
        # one scoring round for the whole batch: the micro-batcher groups it across patients
        requests = [r for _, _, output in outputs for r in output.requests]
        if requests:
            results = await scoring.score(requests)
            for _, _, output in outputs:
                if output.requests:
                    mine = results[: len(output.requests)]
                    results = results[len(output.requests) :]
                    pipeline.finish(output, mine)
        lines: list[str] = []
        for _, key, output in outputs:
            lines.extend(output.lines)
            if output.risk is not None:
                pending.append(await records.send(topics.risk, key=key, value=output.risk))
            for alert in output.alerts:
                stats.alerts += 1
                pending.append(await records.send(topics.alerts, key=key, value=alert))
        # accepted by the time-series server and every record acknowledged by the broker
        await asyncio.gather(sink.write(lines), *pending)
        for event, key, output in outputs:  # only then the new state
            with current_event(event):
                windows[key] = output.window.to_bytes()
