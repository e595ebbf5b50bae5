"""The batch step: one fetched batch of the patient stream, from records to stored outputs.

Per batch: **decode** every record (dead-lettering what fails: each record yields
observations or a dead letter, never neither), re-route observations whose patient lives
in another partition, **group** them by patient; hand every patient's observations to the
pipeline in one call (:meth:`~streams.processing.pipeline.PatientPipeline.observations`:
applied once per patient, contained, scored by the models across the whole batch, sealed),
apply care-team **actions** and clock **ticks**; **emit** risk, alert and dead-letter
records and the time-series lines; hand everything to the
:class:`~streams.processing.checkpoint.Checkpoint`, which stores it in order.

Plain typed code: it talks to its ports only, so it is unit-tested with in-memory fakes.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..access.signing import action_signed
from ..alerts.actions import AlertAction, decode_action
from ..alerts.quality import QualityStats
from ..ingest.decode import IngestLimits, decode_record
from ..ingest.native import native_record
from ..ingest.problems import DeadLetter, DecodeResult, Reason
from ..schemas.observation import Kind, Observation
from ..settings import Settings, TopicSettings
from . import codec
from .checkpoint import Checkpoint
from .outputs import PatientOutput, PatientResult
from .pipeline import PatientBatch, PatientPipeline
from .ports import IncomingRecord, StepPorts
from .state import PatientState
from .stats import IngestStats

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 60  # a gateway's clock may run this far ahead of the worker's


@dataclass(frozen=True)
class StepSettings:
    """What the batch step is configured with."""

    topics: TopicSettings
    limits: IngestLimits = field(default_factory=IngestLimits)
    window_cache: int = 20_000  # patient states kept decoded between batches
    unsigned_actions: bool = False  # trust actions without a gateway signature
    action_max_age_s: int = 900  # an older signed action is refused as a replay

    @classmethod
    def of(cls, settings: Settings) -> StepSettings:
        ingest, security = settings.ingest, settings.security
        return cls(
            settings.topics,
            IngestLimits(ingest.max_record_bytes, ingest.max_entries),
            ingest.window_cache,
            security.unsigned_actions,
            security.action_max_age_s,
        )


@dataclass(frozen=True)
class StepCounters:
    """What the batch step counts (the worker's ``/stats`` and metrics read them)."""

    ingest: IngestStats = field(default_factory=IngestStats)
    quality: QualityStats = field(default_factory=QualityStats)


def value_of(record: IncomingRecord) -> bytes:
    return record.value if isinstance(record.value, bytes) else b""


def key_of(record: IncomingRecord) -> bytes | None:
    return record.key if isinstance(record.key, bytes) else None


@dataclass
class Batch:
    """What one batch collects on its way through the step."""

    received_at: datetime
    wall_ms: int
    sent: list[Awaitable[object]] = field(default_factory=list)  # records sent
    # partition -> patient -> observations
    groups: dict[int, dict[str, list[Observation]]] = field(default_factory=dict)
    # the record each observation came in (by the observation's identity: observations
    # are not hashable, and equal observations of two records are two records)
    origin: dict[int, IncomingRecord] = field(default_factory=dict)
    actions: list[tuple[AlertAction, IncomingRecord]] = field(default_factory=list)
    ticks: dict[int, int] = field(default_factory=dict)  # partition -> wall ms
    # key -> (partition, state) of every patient the batch changed: what the checkpoint stores
    changed: dict[bytes, tuple[int, PatientState]] = field(default_factory=dict)
    outputs: list[tuple[bytes, PatientOutput]] = field(default_factory=list)


class BatchStep:
    """Turns each batch of the patient stream into outputs and hands them to the checkpoint."""

    def __init__(
        self,
        pipeline: PatientPipeline,
        ports: StepPorts,
        checkpoint: Checkpoint,
        settings: StepSettings,
        counters: StepCounters | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipeline, self.checkpoint, self.clock = pipeline, checkpoint, clock
        self.settings, topics = settings, settings.topics
        self.topics, self.limits = topics, settings.limits
        self.state, self.records, self.scoring = ports.state, ports.records, ports.scoring
        self.partition_of = ports.partition_of
        self.counters = counters or StepCounters()
        self.stats, self.quality = self.counters.ingest, self.counters.quality
        self.action_max_age_ms = settings.action_max_age_s * 1000
        # one directory keys patients for the step and the pipeline alike
        self.patients = pipeline.patients
        self.topic_of_kind = {
            Kind.VITAL: topics.vitals,
            Kind.GLUCOSE: topics.glucose,
            Kind.LAB: topics.labs,
        }
        self.kinds = {topic: kind for kind, topic in self.topic_of_kind.items()}
        # the tick index: partition -> patient -> wall ms from which a tick may change its
        # state (PatientPipeline.tick_due); patients only new data can change are not in it.
        # Filled by what this worker processes and, on a partition's first tick, by a scan of
        # the store (states from before a restart are due at once, then indexed as visited)
        self.due: dict[int, dict[bytes, int]] = {}
        self.scanned: set[int] = set()
        # states kept decoded between batches, most recently processed last
        self.cache: OrderedDict[bytes, PatientState] = OrderedDict()
        self.cache_size = settings.window_cache

    def forget(self) -> None:
        """Partitions were revoked: rebuild the tick index from the store at the next ticks;
        drop the decoded windows (another worker may change them now)."""
        self.due.clear()
        self.scanned.clear()
        self.cache.clear()

    async def __call__(self, records: Sequence[IncomingRecord]) -> None:
        received_at = self.clock()
        batch = Batch(received_at, int(received_at.timestamp() * 1000))
        for record in records:
            await self._sort(batch, record)
        await self._apply(batch)
        await self._act(batch)
        await self._tick(batch)
        self._remember(batch)
        lines = await self._emit(batch)
        stored = await self.checkpoint.submit(batch.sent, lines, batch.changed, records)
        self.stats.state_writes += len(batch.changed)
        self.stats.state_bytes += stored

    # -- decode and group ----------------------------------------------------------------
    async def _sort(self, batch: Batch, record: IncomingRecord) -> None:
        topics, value = self.topics, value_of(record)
        if record.topic == topics.ticks:
            batch.ticks[record.partition] = batch.wall_ms
            return
        if record.topic == topics.alert_acks:
            await self._sort_action(batch, record, value)
            return
        result = decode_record(
            value,
            received_at=batch.received_at,
            topic_kind=self.kinds.get(record.topic),
            key=key_of(record),
            limits=self.limits,
        )
        self.stats.records += 1
        self.stats.observations += len(result.observations)
        # before anything is keyed, stored or published: one spelling, pseudonymised
        result.observations = self.patients.observations(result.observations)
        if result.problems:
            await self.dead_letter(batch, result, record, value)
        patients = batch.groups.setdefault(record.partition, {})
        for observation in result.observations:
            pid = observation.patient_id.encode()
            if self.partition_of(pid) != record.partition:
                # another patient's partition owns its window: route it there
                self.stats.rerouted += 1
                topic = self.topic_of_kind[observation.kind]
                batch.sent.append(
                    await self.records.send(
                        topic, pid, native_record(observation), source=record.partition
                    )
                )
                continue
            batch.origin[id(observation)] = record
            patients.setdefault(observation.patient_id, []).append(observation)

    async def _sort_action(self, batch: Batch, record: IncomingRecord, value: bytes) -> None:
        action = decode_action(value)
        if not isinstance(action, DecodeResult) and not self._trusted(action):
            action = DecodeResult.refused(
                Reason.UNAUTHENTICATED,
                "alert action without a valid gateway signature (sig): refused",
            )
        if not isinstance(action, DecodeResult):
            stale = self._stale(action, batch.wall_ms)
            if stale is not None:
                action = DecodeResult.refused(Reason.REPLAYED, stale)
        if isinstance(action, DecodeResult):
            await self.dead_letter(batch, action, record, value)
            return
        # the patient as windows are keyed (a system writing the topic may use its own id)
        action = action.model_copy(update={"patient_id": self.patients.key(action.patient_id)})
        if self.partition_of(action.patient_id.encode()) != record.partition:
            self.stats.rerouted += 1
            key = action.patient_id.encode()
            batch.sent.append(
                await self.records.send(self.topics.alert_acks, key, value, source=record.partition)
            )
        else:
            batch.actions.append((action, record))

    def _stale(self, action: AlertAction, wall_ms: int) -> str | None:
        """Why a signed action cannot be applied now (a replay), or None."""
        issued = action.issued_at_ms
        if issued is None or action.nonce is None:
            if self.settings.unsigned_actions:
                return None  # another system's actions, on a topic the ACLs protect
            return "signed action without issued_at_ms and nonce: refused as a replay"
        age_s = (wall_ms - issued) / 1000
        if age_s > self.action_max_age_ms / 1000:
            bound = self.action_max_age_ms // 1000
            return f"action issued {age_s:.0f} s ago, over the {bound} s bound"
        if age_s < -CLOCK_SKEW_S:
            return f"action issued {-age_s:.0f} s in the future"
        return None

    def _trusted(self, action: AlertAction) -> bool:
        """Signed by a gateway of this deployment, or the deployment trusts the topic."""
        if self.settings.unsigned_actions:
            return True
        return action_signed(self.pipeline.keys.actions, action.model_dump())

    # -- states ----------------------------------------------------------------------------
    def stored(self, partition: int, key: bytes) -> bytes | None:
        """The patient's state as of the previous batch (what a failure restores)."""
        pending = self.checkpoint.pending(key)
        return pending[1] if pending is not None else self.state.get(partition, key)

    def load(self, batch: Batch, partition: int, key: bytes) -> PatientState | None:
        if key in batch.changed:
            return batch.changed[key][1]
        pending = self.checkpoint.pending(key)  # a batch still being stored
        if pending is not None:
            return pending[0]
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return codec.load(self.state.get(partition, key))

    def _remember(self, batch: Batch) -> None:
        """Index the states the batch changed for ticks; keep them decoded for the next."""
        for key, (partition, state) in batch.changed.items():
            self._index(partition, key, state)
            if self.cache_size:
                self.cache[key] = state
                self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _index(self, partition: int, key: bytes, state: PatientState) -> None:
        due = self.pipeline.tick_due(state)
        if due is None:
            self.due.get(partition, {}).pop(key, None)
        else:
            self.due.setdefault(partition, {})[key] = due

    # -- observations, actions, ticks ------------------------------------------------------
    async def _apply(self, batch: Batch) -> None:
        """Every patient's observations in one call to the pipeline (models scored across
        the batch); each patient's outputs in order, a quarantine's fault first."""
        where: list[tuple[int, bytes]] = []
        patients: list[PatientBatch] = []
        for partition, grouped in batch.groups.items():
            for patient_id, observations in grouped.items():
                key = patient_id.encode()
                where.append((partition, key))
                patients.append(
                    PatientBatch(
                        patient_id,
                        observations,
                        load=functools.partial(self.load, batch, partition, key),
                        stored=functools.partial(self.stored, partition, key),
                    )
                )
        if not patients:
            return
        results = await self.pipeline.observations(patients, self.scoring, batch.wall_ms)
        for (partition, key), result in zip(where, results, strict=True):
            await self._take(batch, partition, key, result)

    async def _take(self, batch: Batch, partition: int, key: bytes, result: PatientResult) -> None:
        """A patient's result into the batch: its state, outputs and counts; what it refused
        dead-lettered; a quarantined state dead-lettered before anything else of it."""
        if result.state is not None:
            batch.changed[key] = (partition, result.state)
        if result.quarantined is not None:
            await self._quarantine(batch, partition, key, result.quarantined, result.error or "")
        for output in result.outputs:
            batch.outputs.append((key, output))
            self.stats.count(output.applied)
            self.quality.cgm_readings += output.cgm_inserted
            for judgement in output.quality:
                self.quality.add(judgement)
            if output.model_error is not None:
                self.stats.processing_errors += 1
                log.error("model scores of a patient failed (%s)", output.model_error)
        if not result.failed:
            return
        self.stats.processing_errors += len(result.failed)
        log.error(
            "applying %d observations of a patient in partition %d failed (%s): "
            "dead-lettered, the patient's state kept as before them",
            len(result.failed),
            partition,
            result.error,
        )
        problem = DecodeResult.refused(
            Reason.PROCESSING, f"applying the record failed ({result.error}); please report"
        )
        failed = {id(batch.origin[id(o)]): batch.origin[id(o)] for o in result.failed}
        for record in failed.values():
            await self.dead_letter(batch, problem, record, value_of(record))

    async def _quarantine(
        self, batch: Batch, partition: int, key: bytes, state: bytes, error: str
    ) -> None:
        """Dead-letter a patient's unusable state (the pipeline restarted the patient with a
        ``monitoring_fault`` alarm and closed the alarms it could read)."""
        self.stats.quarantined += 1
        log.error(
            "patient state in %s[%d] unusable (%s): quarantined to %s, state reset",
            self.state.name,
            partition,
            error,
            self.topics.deadletter,
        )
        letter = DeadLetter.build(
            DecodeResult.refused(
                Reason.STATE, f"stored patient state could not be used ({error}); reset"
            ),
            state,
            topic=self.state.name,
            partition=partition,
            offset=None,
            key=key,
            received_at=batch.received_at,
        )
        await self._send_letter(batch, letter, key)

    async def _act(self, batch: Batch) -> None:
        for action, record in batch.actions:
            key = action.patient_id.encode()
            try:
                target = self.load(batch, record.partition, key)
                if target is not None and action.nonce is not None:
                    if self.pipeline.seen_action(target, action.alert_id, action.nonce):
                        problem = DecodeResult.refused(
                            Reason.REPLAYED, "this action (nonce) was applied before: a replay"
                        )
                        await self.dead_letter(batch, problem, record, value_of(record))
                        continue
                done = target and self.pipeline.act(
                    target,
                    action.alert_id,
                    action.action,
                    action.by,
                    batch.wall_ms,
                    action.minutes,
                    action.nonce,
                )
            except Exception as exc:  # noqa: BLE001 - this action is refused, the rest count
                self.stats.processing_errors += 1
                problem = DecodeResult.refused(
                    Reason.PROCESSING, f"applying the action failed ({type(exc).__name__})"
                )
                await self.dead_letter(batch, problem, record, value_of(record))
                continue
            if not done or target is None:
                self.stats.actions_ignored += 1
                log.info("alert action on %s ignored: not open", action.alert_id)
                continue
            self.stats.actions += 1
            batch.outputs.append((key, done))
            batch.changed[key] = (record.partition, target)

    async def _tick(self, batch: Batch) -> None:
        """Time-driven transitions, for the patients the tick index says are due."""
        for partition, now in batch.ticks.items():
            self.stats.ticks += 1
            due = self.due.setdefault(partition, {})
            if partition not in self.scanned:
                for key in self.state.keys(partition):
                    due.setdefault(key, 0)
                self.scanned.add(partition)
            for key in [k for k, at in due.items() if at <= now]:
                await self._tick_patient(batch, partition, key, now)

    async def _tick_patient(self, batch: Batch, partition: int, key: bytes, now: int) -> None:
        result = self.pipeline.tick(
            key.decode("utf-8", "replace"),
            functools.partial(self.load, batch, partition, key),
            functools.partial(self.stored, partition, key),
            now,
        )
        if result is None or result.state is None:
            self.due[partition].pop(key, None)
            return
        if result.quarantined is not None:
            await self._quarantine(batch, partition, key, result.quarantined, result.error or "")
        if any(output.alerts for output in result.outputs):
            batch.outputs += [(key, output) for output in result.outputs]
            batch.changed[key] = (partition, result.state)
        elif key not in batch.changed:
            # a tick without alarms stores nothing: the next batch decodes the stored state
            self.cache.pop(key, None)
        self._index(partition, key, result.state)

    # -- outputs ---------------------------------------------------------------------------
    async def _emit(self, batch: Batch) -> list[str]:
        """Send risk and alert records; the time-series lines of the whole batch."""
        lines: list[str] = []
        send = self.records.send
        for key, output in batch.outputs:
            lines.extend(output.lines)
            source = self.partition_of(key)  # the patient's partition: its inputs' partition
            if output.risk is not None:
                batch.sent.append(await send(self.topics.risk, key, output.risk, source=source))
            for alert in output.alerts:
                self.stats.alerts += 1
                batch.sent.append(await send(self.topics.alerts, key, alert, source=source))
        return lines

    async def dead_letter(
        self, batch: Batch, result: DecodeResult, record: IncomingRecord, value: bytes
    ) -> None:
        key = key_of(record)
        if key is not None:
            key = self.patients.key(key.decode("utf-8", "replace")).encode()
        letter = DeadLetter.build(
            result,
            value,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            received_at=batch.received_at,
        )
        log.info(
            "dead-lettered %s[%d]@%d: %s (%d problems)",
            record.topic,
            record.partition,
            record.offset,
            letter.reason.value,
            len(letter.problems),
        )
        await self._send_letter(batch, letter, key)

    async def _send_letter(self, batch: Batch, letter: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters[letter.reason.value] += 1
        value = letter.model_dump_json().encode()
        batch.sent.append(
            await self.records.send(self.topics.deadletter, key, value, source=letter.partition)
        )
