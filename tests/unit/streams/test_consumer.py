"""Batch delivery's bookkeeping on a real (unstarted) Faust app and consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import faust
import pytest
from faust.types import TP, Message

from streams.engine.consumer import BatchDelivery, acknowledge, current, deliver_batches, release

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
