"""The batch step: one fetched batch of the patient stream, from records to stored outputs.

Per batch: **decode** every record (dead-lettering what fails: each record yields
observations or a dead letter, never neither), re-route observations whose patient lives
in another partition, **group** them by patient; **apply** each patient's observations to
its window once (contained: ``streams.processing.containment``), **score** the model requests of the
whole batch at once, apply care-team **actions** and clock **ticks**; **emit** risk, alert
and dead-letter records and the time-series lines; hand everything to the
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

from ..access.audit import seal
from ..access.signing import action_signed
from ..alerts.actions import AlertAction, decode_action
from ..alerts.quality import QualityStats
from ..ingest.decode import IngestLimits, decode_record
from ..ingest.native import native_record
from ..ingest.problems import DeadLetter, DecodeResult, Reason
from ..schemas.observation import Kind, Observation
from ..settings import TopicSettings
from ..windows.patient import PatientWindow
from .checkpoint import Checkpoint
from .containment import PatientResult, apply_contained, contained_tick, load_window
from .pipeline import PatientOutput, PatientPipeline
from .ports import BatchScorer, IncomingRecord, RecordSink, StateStore
from .stats import IngestStats

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 60  # a gateway's clock may run this far ahead of the worker's

FAULT_REASON = (
    "Monitoring fault: this patient's stored state could not be processed and was reset; "
    "alarms restart from new readings. Review recent values by hand."
)


def _readable(state: bytes) -> PatientWindow | None:
    """A quarantined state's window, when it can still be decoded (its alarms are closed)."""
    try:
        return load_window(state)
    except Exception:  # noqa: BLE001 - unreadable: the views close its alarms on the fault
        return None


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
    origin: dict[int, IncomingRecord] = field(default_factory=dict)  # id(obs) -> its record
    actions: list[tuple[AlertAction, IncomingRecord]] = field(default_factory=list)
    ticks: dict[int, int] = field(default_factory=dict)  # partition -> wall ms
    current: dict[bytes, tuple[int, PatientWindow]] = field(default_factory=dict)  # touched
    outputs: list[tuple[bytes, PatientOutput]] = field(default_factory=list)


class BatchStep:
    """Turns each batch of the patient stream into outputs and hands them to the checkpoint."""

    def __init__(
        self,
        *,
        topics: TopicSettings,
        limits: IngestLimits,
        pipeline: PatientPipeline,
        scoring: BatchScorer,
        state: StateStore,
        records: RecordSink,
        checkpoint: Checkpoint,
        stats: IngestStats,
        quality: QualityStats,
        partition_of: Callable[[bytes], int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        window_cache: int = 20_000,
        unsigned_actions: bool = False,
        action_max_age_s: int = 900,
    ) -> None:
        self.unsigned_actions = unsigned_actions
        self.action_max_age_ms = action_max_age_s * 1000
        # one directory keys patients for the step and the pipeline alike
        self.patients = pipeline.patients
        self.topics, self.limits, self.pipeline, self.scoring = topics, limits, pipeline, scoring
        self.state, self.records, self.checkpoint = state, records, checkpoint
        self.stats, self.quality, self.partition_of, self.clock = (
            stats,
            quality,
            partition_of,
            clock,
        )
        self.topic_of_kind = {
            Kind.VITAL: topics.vitals,
            Kind.GLUCOSE: topics.glucose,
            Kind.LAB: topics.labs,
        }
        self.kinds = {topic: kind for kind, topic in self.topic_of_kind.items()}
        # the tick index: partition -> patient -> wall ms from which a tick may change its
        # window (PatientPipeline.tick_due); patients only new data can change are not in it.
        # Filled by what this worker processes and, on a partition's first tick, by a scan of
        # the store (windows from before a restart are due at once, then indexed as visited)
        self.due: dict[int, dict[bytes, int]] = {}
        self.scanned: set[int] = set()
        # windows kept decoded between batches, most recently processed last
        self.cache: OrderedDict[bytes, PatientWindow] = OrderedDict()
        self.cache_size = window_cache

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
        await self._score(batch)
        await self._act(batch)
        await self._tick(batch)
        self._remember(batch)
        lines = await self._emit(batch)
        stored = await self.checkpoint.submit(batch.sent, lines, batch.current, records)
        self.stats.state_writes += len(batch.current)
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
                batch.sent.append(await self.records.send(topic, pid, native_record(observation)))
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
            batch.sent.append(await self.records.send(self.topics.alert_acks, key, value))
        else:
            batch.actions.append((action, record))

    def _stale(self, action: AlertAction, wall_ms: int) -> str | None:
        """Why a signed action cannot be applied now (a replay), or None."""
        issued = action.issued_at_ms
        if issued is None or action.nonce is None:
            if self.unsigned_actions:
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
        if self.unsigned_actions:
            return True
        return action_signed(self.pipeline.keys.actions, action.model_dump())

    # -- windows ---------------------------------------------------------------------------
    def stored(self, partition: int, key: bytes) -> bytes | None:
        """The patient's state as of the previous batch (what a failure restores)."""
        pending = self.checkpoint.pending(key)
        return pending[1] if pending is not None else self.state.get(partition, key)

    def load(self, batch: Batch, partition: int, key: bytes) -> PatientWindow | None:
        if key in batch.current:
            return batch.current[key][1]
        pending = self.checkpoint.pending(key)  # a batch still being stored
        if pending is not None:
            return pending[0]
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return load_window(self.state.get(partition, key))

    def _remember(self, batch: Batch) -> None:
        """Index the windows the batch touched for ticks; keep them decoded for the next."""
        for key, (partition, window) in batch.current.items():
            self._index(partition, key, window)
            if self.cache_size:
                self.cache[key] = window
                self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _index(self, partition: int, key: bytes, window: PatientWindow) -> None:
        due = self.pipeline.tick_due(window)
        if due is None:
            self.due.get(partition, {}).pop(key, None)
        else:
            self.due.setdefault(partition, {})[key] = due

    async def _apply(self, batch: Batch) -> None:
        for partition, patients in batch.groups.items():
            for patient_id, observations in patients.items():
                key = patient_id.encode()
                applied = apply_contained(
                    self.pipeline,
                    patient_id,
                    observations,
                    load=functools.partial(self.load, batch, partition, key),
                    stored=functools.partial(self.stored, partition, key),
                    arrived_at=batch.wall_ms,
                )
                batch.current[key] = (partition, applied.window)
                first = len(batch.outputs)  # a quarantine's events go before the new ones
                for output in applied.outputs:
                    batch.outputs.append((key, output))
                    self.stats.count(output.applied)
                    self.quality.cgm_readings += output.cgm_inserted
                    for judgement in output.quality:
                        self.quality.add(judgement)
                await self._contain(batch, partition, key, applied, first)

    async def _contain(
        self, batch: Batch, partition: int, key: bytes, applied: PatientResult, first: int
    ) -> None:
        """Dead-letter what ``apply_contained`` refused; quarantine an unusable state (its
        closing events and fault alarm published before the patient's new events, at
        ``first``: the views close what came before the fault, never what followed it)."""
        if applied.quarantined is not None:
            output = await self.quarantine(
                batch,
                partition,
                key,
                applied.quarantined,
                applied.error or "",
                applied.window,
                applied.replaced,
            )
            batch.outputs.insert(first, (key, output))
        if not applied.failed:
            return
        self.stats.processing_errors += len(applied.failed)
        log.error(
            "applying %d observations of a patient in partition %d failed (%s): "
            "dead-lettered, the patient's window kept as before them",
            len(applied.failed),
            partition,
            applied.error,
        )
        problem = DecodeResult.refused(
            Reason.PROCESSING, f"applying the record failed ({applied.error}); please report"
        )
        failed = {id(batch.origin[id(o)]): batch.origin[id(o)] for o in applied.failed}
        for record in failed.values():
            await self.dead_letter(batch, problem, record, value_of(record))

    async def quarantine(
        self,
        batch: Batch,
        partition: int,
        key: bytes,
        state: bytes,
        error: str,
        window: PatientWindow,
        replaced: PatientWindow | None = None,
    ) -> PatientOutput:
        """Dead-letter a patient's unusable state; the patient restarts with an alarm, and
        the alarms of the state it replaces (``replaced``, when readable) are closed."""
        self.stats.quarantined += 1
        log.error(
            "patient state in %s[%d] unusable (%s): quarantined to %s, window reset",
            self.state.name,
            partition,
            error,
            self.topics.deadletter,
        )
        letter = DeadLetter.build(
            DecodeResult.refused(
                Reason.STATE, f"stored patient window could not be used ({error}); reset"
            ),
            state,
            topic=self.state.name,
            partition=partition,
            offset=None,
            key=key,
            received_at=batch.received_at,
        )
        await self._send_letter(batch, letter, key)
        evidence = {
            "error": error,
            "quarantined_to": self.topics.deadletter,
            # the views close the patient's earlier alarms when they could not be read here
            "earlier_alarms": "closed" if replaced is not None else "unreadable",
        }
        return self.pipeline.quarantined(window, replaced, batch.wall_ms, FAULT_REASON, evidence)

    # -- models, actions, ticks ------------------------------------------------------------
    async def _score(self, batch: Batch) -> None:
        """One scoring round for the whole batch: the scorer groups it by model."""
        requests = [r for _, output in batch.outputs for r in output.requests]
        if not requests:
            return
        results = await self.scoring.score(requests)
        start = 0
        for _, output in batch.outputs:
            if not output.requests:
                continue
            mine = results[start : start + len(output.requests)]
            start += len(output.requests)
            try:
                self.pipeline.finish(output, mine)
            except Exception as exc:  # noqa: BLE001 - the rule alarms still go out
                self.stats.processing_errors += 1
                log.error("model scores of a patient failed (%s)", type(exc).__name__)
                # the rule alarms, sealed on the patient's chain like every alarm event
                output.alerts = seal(self.pipeline.keys.audit, output.window, output.events)

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
            batch.current[key] = (record.partition, target)

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
        load = functools.partial(self.load, batch, partition, key)
        ticked = contained_tick(self.pipeline, load, now)
        if ticked is None:
            self.due[partition].pop(key, None)
            return
        if isinstance(ticked, str):  # the stored state makes ticks fail
            state = self.stored(partition, key) or b""
            replaced = _readable(state)
            window = PatientWindow(key.decode("utf-8", "replace"))
            if replaced is not None:  # the audit chain goes on
                window.audit_seq, window.audit_head = replaced.audit_seq, replaced.audit_head
            output = await self.quarantine(batch, partition, key, state, ticked, window, replaced)
        else:
            window, output = ticked
        if output.alerts:
            batch.outputs.append((key, output))
            batch.current[key] = (partition, window)
        elif key not in batch.current:
            # a tick without alarms stores nothing: the next batch decodes the stored window
            self.cache.pop(key, None)
        self._index(partition, key, window)

    # -- outputs ---------------------------------------------------------------------------
    async def _emit(self, batch: Batch) -> list[str]:
        """Send risk and alert records; the time-series lines of the whole batch."""
        lines: list[str] = []
        for key, output in batch.outputs:
            lines.extend(output.lines)
            if output.risk is not None:
                batch.sent.append(await self.records.send(self.topics.risk, key, output.risk))
            for alert in output.alerts:
                self.stats.alerts += 1
                batch.sent.append(await self.records.send(self.topics.alerts, key, alert))
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
        batch.sent.append(await self.records.send(self.topics.deadletter, key, value))
