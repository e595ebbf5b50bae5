"""The Faust internal the stream relies on: the current-event context variable."""

import faust.streams
from faust.streams import current_event as faust_current_event

from streams.engine.faust_compat import current_event


class _Message:
    partition = 5


class _Event:
    message = _Message()


def test_current_event_sets_and_restores_faust_context() -> None:
    assert faust_current_event() is None
    event = _Event()
    with current_event(event):  # type: ignore[arg-type]
        assert faust_current_event() is event
    assert faust_current_event() is None
    assert isinstance(faust.streams._current_event, type(faust.streams._current_event))
