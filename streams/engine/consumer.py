"""Faust's consumer, handing the patient stream's topics over one fetched batch at a time.

Faust delivers every record to its streams on its own: per record the consumer's drain loop
races the delivery against a rebalance (``wait_first``: two tasks), the conductor builds an
``Event`` and puts it on a channel queue, the agent's stream takes it off again and
acknowledges it. On the development box that path alone tops out near 11k records/s
(``bench/stream.py``, "Faust floor"), below what the patient pipeline does in process.

This consumer keeps everything else of Faust: group membership and assignment, table
recovery and changelogs, the offset commits of acknowledged records, the per-record path for
every other topic. It changes one thing: the records of topics registered with
:func:`deliver_batches` go, as one list per fetch, to their handler, which must
acknowledge each one when its effects are safe (:func:`acknowledge`); only acknowledged
offsets are committed. The handler runs in the drain loop, so while it works nothing more
is fetched: a handler that waits (the patient stream waits for the previous batch to be
stored, e.g. through a database outage) is the stream's backpressure. A handler that raises
crashes the worker rather than skipping records.

Records fetched before a rebalance but handled after it (a new generation) are dropped
unacknowledged, as Faust's streams drop them: they are fetched again from the committed
offset by whichever worker owns the partition now.

Faust's "seek back to the committed offset" (after every rebalance, and whenever records are
dropped while flow is stopped) moves nothing on a partition that has no committed offset yet
(aiokafka seeks only offsets above 0). A worker that died before its first commit on a
partition (commits come every few seconds) left such partitions, and the worker that took them
over could skip the readings fetched and dropped during the hand-over: a patient's urgent low
never processed. :meth:`BatchDelivery.seek_to_committed` seeks those partitions to their
beginning instead, which is where ``auto_offset_reset="earliest"`` would have started: records
may be processed twice (the sinks are idempotent, alarm ids stable), never skipped.

Under ``processing_guarantee="exactly_once"`` (Kafka transactions, one transactional producer
per owned partition) a commit sends the acknowledged offsets into each partition's
transaction and commits it with everything sent in it. Everything sent in it must then be
the effect of acknowledged records, or a crash after the commit would replay records whose
outputs are already visible. So a commit is taken only between batches, when every record
handed to the handler is acknowledged (:meth:`BatchDelivery.commit`): the drain loop waits
for that every commit interval, which pauses the pipeline briefly (the cost of the
guarantee), and Faust's own commit timer commits only when it finds the stream idle.

The drain loop it replaces, and the consumer methods it relies on, are pinned by source
digest (:func:`check_consumer_internals`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING, ThreadDelegateConsumer
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from .faust_compat import raw_topic

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]

log = logging.getLogger(__name__)

TRANSPORT_SCHEME = "bedside"

# app -> topic name -> handler of that topic's records (an app registers before it starts)
_handlers: weakref.WeakKeyDictionary[faust.App, dict[str, BatchHandler]] = (
    weakref.WeakKeyDictionary()
)

# SHA-256 of the whitespace-normalised source of the Faust consumer methods this module
# replaces (the drain loop) or relies on (what getmany yields, how an ack and the tracking of
# unacknowledged records work): if Faust changes one, re-read it and carry the change over
# before updating its digest.
PINNED = {
    "_drain_messages": "d8199efd69caed303ddd3261271f88aea75c6e63b1d6cda3585bad1ed9f395a9",
    "getmany": "8cbaa23e1c2e45b69d7f656338aa797d4bf19f01916623728f457de910702bec",
    "ack": "45963ce1acf34c73077dd36fc69e693a98914f3203d5a298fab08a67dc872012",
    "track_message": "31091e9ad42319a9c2c49ebe649e8a0d05f291859c1a1a79ac50fef3deb25f26",
    "commit": "1b59af7b535a06d1c7ab9fdbe87e5b99308dbcf5f84b572038c1b9e9aa50f242",
}

#: Under exactly-once, how often the drain loop looks whether the batches it handed over
#: are all acknowledged before it commits (every ``broker_commit_interval``).
QUIET_POLL_S = 0.002


class IncompatibleConsumerError(RuntimeError):
    """The installed Faust's drain loop is not the one this module was written against."""


def source_digest(function: Callable[..., Any]) -> str:
    """SHA-256 of a third-party function's source, whitespace-normalised."""
    source = inspect.getsource(function)
    normalised = "\n".join(line.strip() for line in source.splitlines() if line.strip())
    return hashlib.sha256(normalised.encode()).hexdigest()


def check_consumer_internals() -> None:
    changed = [
        f"Consumer.{name} (sha256 {actual})"
        for name, expected in PINNED.items()
        if (actual := source_digest(getattr(FaustConsumer, name))) != expected
    ]
    if changed:
        msg = (
            f"faust-streaming {faust.__version__}: {', '.join(changed)} changed; re-verify "
            "streams/engine/consumer.py against it"
        )
        raise IncompatibleConsumerError(msg)


def deliver_batches(app: faust.App, topics: Iterable[str], handler: BatchHandler) -> None:
    """Subscribe ``app`` to ``topics`` (raw bytes) and hand their records to ``handler``."""
    names = tuple(topics)
    app.topics.add(raw_topic(app, *names))
    registered = _handlers.setdefault(app, {})
    for name in names:
        registered[name] = handler


def acknowledge(consumer: Any, messages: Iterable[Message]) -> None:
    """Mark handled records safe to commit."""
    ack = consumer.ack
    for message in messages:
        ack(message)


def release(consumer: Any, messages: Iterable[Message]) -> None:
    """Stop tracking records whose batch was interrupted (a stop cancelled the handler):
    they stay unacknowledged, so uncommitted and fetched again, and a stop or rebalance
    no longer waits for them. Records already acknowledged are left as they are."""
    unacked = consumer._unacked_messages
    for message in messages:
        if not message.acked:
            unacked.discard(message)


def redelivered(handed: Mapping[TP, tuple[int | None, int]], tp: TP, message: Message) -> bool:
    """Whether ``message`` was handed over before in its consumer generation. Faust resumes
    the stream partitions after a recovery before it seeks them back to the committed offsets,
    so records fetched in between come again: handled twice, their outputs would be sent twice
    (in one transaction, under exactly-once)."""
    last = handed.get(tp)
    return last is not None and last[0] == message.generation_id and message.offset <= last[1]


def unacknowledged(consumer: Any) -> bool:
    """Whether a record handed over is still unacknowledged. (Faust leaves a record it had
    already acknowledged once in its set when a seek delivers it again; those are cleared.)"""
    unacked = consumer._unacked_messages
    if not unacked:
        return False
    unacked -= {message for message in unacked if message.acked}
    return bool(unacked)


def current(consumer: Any, messages: Sequence[Message]) -> list[Message]:
    """The records still of the consumer's generation; the others are forgotten, unacked."""
    app = consumer.app
    generation = app.consumer_generation_id
    active = app.flow_control.is_active()
    kept = [m for m in messages if active and m.generation_id == generation]
    if len(kept) < len(messages):
        for message in messages:
            if not active or message.generation_id != generation:
                consumer._unacked_messages.discard(message)
        log.info("dropped %d records fetched before a rebalance", len(messages) - len(kept))
    return kept


class BatchDelivery:
    """Mixin for Faust's aiokafka ``Consumer``: batch delivery of registered topics, a seek
    back to committed offsets that never skips a partition with none, and commits between
    batches under exactly-once."""

    _handing: asyncio.Lock | None = None  # held while a handler works on a batch
    # per partition: the consumer generation and the last offset handed over in it
    _handed: dict[TP, tuple[int | None, int]] | None = None

    def _handing_lock(self) -> asyncio.Lock:
        if self._handing is None:
            self._handing = asyncio.Lock()
        return self._handing

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit; under exactly-once only while no handler works and every record
        handed over is acknowledged (else nothing is committed now: the drain loop commits
        at its next quiet point)."""
        consumer: Any = self
        if not consumer.in_transaction:
            done: bool = await FaustConsumer.commit(consumer, topics, start_new_transaction)
            return done
        async with self._handing_lock():
            if unacknowledged(consumer):
                return False
            done = await FaustConsumer.commit(consumer, topics, start_new_transaction)
            return done

    async def _commit_when_quiet(self) -> None:
        """Wait until every record handed over is acknowledged, then commit (exactly-once)."""
        consumer: Any = self
        while unacknowledged(consumer) and not consumer.should_stop:
            await asyncio.sleep(QUIET_POLL_S)
        await self.commit()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        consumer: Any = self
        committed: Mapping[TP, int] = await ThreadDelegateConsumer.seek_to_committed(consumer)
        # aiokafka seeks only offsets > 0: nothing committed (None) or 0 stays where the
        # fetcher is, possibly past records that were dropped unprocessed
        # (changelogs are left to table recovery, which seeks them itself)
        unset = [
            tp
            for tp, offset in committed.items()
            if (offset is None or offset <= 0) and not consumer._is_changelog_tp(tp)
        ]
        if unset:
            await consumer._thread.seek_to_beginning(*unset)
            # debug: Faust seeks back on every fetch while a rebalance holds the flow
            log.debug(
                "%d stream partitions with no committed offset: from the beginning", len(unset)
            )
        return committed

    async def _drain_messages(self, fetcher: Any) -> None:  # noqa: C901, PLR0912, PLR0915
        consumer: Any = self
        handlers = _handlers.get(consumer.app)
        if not handlers:
            await FaustConsumer._drain_messages(consumer, fetcher)
            return
        # Faust's loop (faust/transport/consumer.py), with records of the registered
        # topics collected per handler and handed over after each fetch
        callback = consumer.callback
        getmany = consumer.getmany
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = consumer._read_offset.__getitem__
        set_read_offset = consumer._read_offset.__setitem__
        set_flag = consumer.diag.set_flag
        unset_flag = consumer.diag.unset_flag
        commit_every = consumer._commit_every
        acks_enabled_for = consumer.app.topics.acks_enabled_for
        unacked = consumer._unacked_messages
        transactional = bool(consumer.in_transaction)
        commit_interval = float(consumer.commit_interval)
        next_commit = time.monotonic() + commit_interval
        handing = self._handing_lock()
        handed = self._handed = self._handed if self._handed is not None else {}
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                batches: dict[BatchHandler, list[Message]] = {}
                await consumer.sleep(0)
                if consumer.should_stop:
                    continue
                async for tp, message in getmany(timeout=1.0):
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await consumer._add_gap(tp, r_offset + 1, offset)
                    handler = handlers.get(message.topic)
                    if handler is None:
                        await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                    elif redelivered(handed, tp, message):
                        pass  # handed over already in this generation: a seek brought it back
                    else:
                        message.tracked = True  # a rebalance waits for it to be acked
                        unacked.add(message)
                        batches.setdefault(handler, []).append(message)
                    set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
                for handler, messages in batches.items():
                    kept = current(consumer, messages)
                    for message in kept:
                        handed[message.tp] = (message.generation_id, message.offset)
                    if kept:
                        try:
                            async with handing:
                                await handler(kept)
                        except BaseException:
                            # the batch will never be acknowledged from here: a stop must
                            # not wait for it (it is fetched again after the restart)
                            release(consumer, kept)
                            raise
                if transactional and time.monotonic() >= next_commit:
                    await self._commit_when_quiet()
                    next_commit = time.monotonic() + commit_interval
                elif commit_every is not None and consumer._n_acked >= commit_every:
                    consumer._n_acked = 0
                    await consumer.commit()
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except BaseException:
            if not consumer.transport.app.should_stop:
                log.exception("the patient stream's batch handler failed; stopping the worker")
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class Consumer(BatchDelivery, faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with batch delivery."""


class Transport(faust_aiokafka.Transport):
    """Faust transport for ``bedside://`` URLs (any Kafka): aiokafka with batch delivery."""

    Consumer = Consumer
