"""Batch delivery's bookkeeping on a real (unstarted) Faust app and consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import faust
import pytest
from faust.types import TP, Message

from streams.engine import consumer as batch_consumer
from streams.engine.consumer import (
    BatchDelivery,
    acknowledge,
    current,
    deliver_batches,
    redelivered,
    release,
    unacknowledged,
)

TOPIC = "bedside.test"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[faust.App]:
    """An app that never connects (nothing is started); the event loops its services open
    in their constructors (a stop would close them) are closed afterwards."""
    opened: list[asyncio.AbstractEventLoop] = []
    new_event_loop = asyncio.new_event_loop

    def recording() -> asyncio.AbstractEventLoop:
        opened.append(new_event_loop())
        return opened[-1]

    monkeypatch.setattr(asyncio, "new_event_loop", recording)
    loop = asyncio.new_event_loop()
    yield faust.App("consumer-test", broker="bedside://127.0.0.1:1", autodiscover=False, loop=loop)
    for each in opened:
        each.close()


def _messages(app: faust.App, generation: int, n: int = 3) -> list[Message]:
    consumer = app.consumer
    out = []
    for offset in range(n):
        message = Message(
            TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation
        )
        message.tracked = True
        consumer._unacked_messages.add(message)  # as the drain loop does
        out.append(message)
    return out


def test_registered_topics_are_subscribed_and_routed(app: faust.App) -> None:

    async def handler(messages: object) -> None: ...

    deliver_batches(app, [TOPIC, "bedside.other"], handler)
    assert {TOPIC, "bedside.other"} <= {t for channel in app.topics for t in channel.topics}


def test_records_of_an_older_generation_are_dropped_unacked(app: faust.App) -> None:
    app.consumer_generation_id = 2
    app.flow_control.resume()
    old, new = _messages(app, 1), _messages(app, 2)
    kept = current(app.consumer, old + new)
    assert kept == new
    assert not any(m.acked for m in old)
    assert set(app.consumer._unacked_messages) == set(new)  # a rebalance waits for these only


def test_nothing_is_kept_while_flow_is_suspended(app: faust.App) -> None:
    app.flow_control.suspend()
    messages = _messages(app, app.consumer_generation_id)
    assert current(app.consumer, messages) == []
    assert not app.consumer._unacked_messages


def test_acknowledged_records_become_committable(app: faust.App) -> None:
    app.topics.add(app.topic(TOPIC))
    app.topics._acking_topics.add(TOPIC)
    messages = _messages(app, app.consumer_generation_id)
    acknowledge(app.consumer, messages)
    assert all(m.acked for m in messages)
    assert sorted(app.consumer._acked[messages[0].tp]) == [0, 1, 2]


def test_records_of_an_interrupted_batch_are_released_unacked(app: faust.App) -> None:
    # a stop that cancels the handler mid-batch once left its records tracked: Faust's stop
    # then waited for their acknowledgement forever
    app.topics.add(app.topic(TOPIC))
    app.topics._acking_topics.add(TOPIC)
    done, interrupted = _messages(app, 0, 2), _messages(app, 0, 3)
    acknowledge(app.consumer, done)
    release(app.consumer, done + interrupted)
    assert not app.consumer._unacked_messages - set(done)
    assert not any(m.acked for m in interrupted)  # not committed: fetched again
    assert all(m.acked for m in done)


class RecordingThread:
    """The consumer thread's two seeks, as aiokafka answers them: ``seek_to_committed``
    returns every assigned partition's committed offset (None where nothing is committed)
    and moves only those above 0."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.to_beginning: list[TP] = []

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return self.committed

    async def seek_to_beginning(self, *partitions: TP) -> None:
        self.to_beginning.extend(partitions)


def test_a_partition_with_no_committed_offset_is_read_from_its_beginning(app: faust.App) -> None:
    """A worker that died before its first commit on a partition leaves no offset there; the
    seek back after a hand-over must not leave the new owner past readings it dropped."""
    table = app.Table("windows")  # its changelog is sought by table recovery, not here
    consumer = app.consumer
    changelog = table.changelog_topic.get_topic_name()
    committed = {
        TP(TOPIC, 0): None,
        TP(TOPIC, 1): 0,
        TP(TOPIC, 2): 7,
        TP("bedside.other", 0): 3,
        TP(changelog, 0): None,
    }
    thread = RecordingThread(committed)
    consumer._thread = thread
    answer = asyncio.run(BatchDelivery.seek_to_committed(consumer))
    assert answer == committed  # what Faust's perform_seek records as read offsets
    assert sorted(thread.to_beginning) == [TP(TOPIC, 0), TP(TOPIC, 1)]


def test_the_transports_consumers_seek_with_the_fix() -> None:
    from streams.engine.consumer import Consumer
    from streams.engine.embedded import TansuConsumer

    for consumer_class in (Consumer, TansuConsumer):
        assert consumer_class.seek_to_committed is BatchDelivery.seek_to_committed


def test_a_record_handed_over_in_its_generation_is_not_handed_over_again(app: faust.App) -> None:
    """Faust resumes stream partitions after a recovery before it seeks them back to the
    committed offsets: records fetched in between come again, and were handled twice."""
    first = _messages(app, 3, 5)
    handed = {first[-1].tp: (3, first[-1].offset)}
    assert all(redelivered(handed, m.tp, m) for m in _messages(app, 3, 5))
    later = Message(TOPIC, 0, 5, 0.0, 0, None, b"k", b"v", None, generation_id=3)
    assert not redelivered(handed, later.tp, later)
    # after a rebalance (a new generation) uncommitted records must be handled again
    assert not any(redelivered(handed, m.tp, m) for m in _messages(app, 4, 5))
    other = Message(TOPIC, 1, 0, 0.0, 0, None, b"k", b"v", None, generation_id=3)
    assert not redelivered(handed, other.tp, other)


def test_a_record_acknowledged_again_does_not_count_as_waiting(app: faust.App) -> None:
    """Faust keeps a second copy of an acknowledged record (same offset) in its set of
    unacknowledged ones; a commit that waits for the set to empty would wait forever."""
    app.topics.add(app.topic(TOPIC))
    app.topics._acking_topics.add(TOPIC)
    consumer = app.consumer
    acknowledge(consumer, _messages(app, 0, 2))
    again = _messages(app, 0, 2)
    acknowledge(consumer, again)
    assert all(m.acked for m in again) and set(consumer._unacked_messages) == set(again)
    assert not unacknowledged(consumer)
    waiting = _messages(app, 0, 3)[2:]
    assert unacknowledged(consumer) and set(consumer._unacked_messages) == set(waiting)


class TransactionalConsumer(BatchDelivery):
    """The exactly-once commit gate on Faust's bookkeeping (a set of unacknowledged records);
    Faust's commit itself, which needs a broker, records that it was called."""

    in_transaction = True
    should_stop = False

    def __init__(self) -> None:
        self._unacked_messages: set[Message] = set()
        self.commits = 0


async def test_under_exactly_once_a_commit_waits_for_a_quiet_stream(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def faust_commit(consumer: TransactionalConsumer, *args: object) -> bool:
        consumer.commits += 1
        return True

    monkeypatch.setattr(batch_consumer.FaustConsumer, "commit", faust_commit)
    consumer = TransactionalConsumer()
    handed = _messages(app, 0, 1)[0]
    consumer._unacked_messages.add(handed)
    # a record handed over and not yet acknowledged: its outputs are in the open transaction,
    # its offset is not; committing now would make them visible without it
    assert await consumer.commit() is False and consumer.commits == 0
    handed.acked = True
    async with consumer._handing_lock():  # a handler is working on the next batch
        waiting = asyncio.ensure_future(consumer.commit())
        await asyncio.sleep(0.01)
        assert not waiting.done() and consumer.commits == 0
    assert await waiting is True and consumer.commits == 1
    # the drain loop's commit waits for the acknowledgement rather than giving up
    late = _messages(app, 0, 2)[1]
    consumer._unacked_messages = {late}
    quiet = asyncio.ensure_future(consumer._commit_when_quiet())
    await asyncio.sleep(0.01)
    assert not quiet.done()
    late.acked = True
    await asyncio.wait_for(quiet, 1)
    assert consumer.commits == 2
