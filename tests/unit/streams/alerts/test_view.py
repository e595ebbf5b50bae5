"""The alert view's live subscribers: a page that falls behind is dropped *and told*."""

from __future__ import annotations

from streams.engine.alert_view import DROPPED, AlertView
from streams.settings import KafkaSettings


def event(i: int) -> dict[str, object]:
    return {"alert_id": f"a{i}", "state": "open", "patient_id": "syn-1"}


def test_a_stalled_subscriber_is_dropped_with_a_last_word() -> None:
    view = AlertView(KafkaSettings(), "bedside.alerts")
    stalled, live = view.subscribe(), view.subscribe()
    for i in range(stalled.maxsize):
        view.apply(event(i))
        live.get_nowait()  # this page keeps up
    view.apply(event(10_000))  # the stalled page's queue is full
    assert stalled not in view.subscribers and live in view.subscribers
    # its stream ends (the page reconnects and reloads) instead of idling on keep-alives
    assert stalled.qsize() == 1 and stalled.get_nowait() is DROPPED
    assert live.get_nowait()["alert_id"] == "a10000"
