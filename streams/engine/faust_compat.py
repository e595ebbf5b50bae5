"""Small Faust helpers, and the one Faust internal the stream relies on outside the
embedded broker profile.

Faust picks a table key's store partition and changelog partition from the *current
event*. A batch of the patient stream spans partitions, so before touching a patient's
table entry the agent makes an event of that patient's partition current. Faust keeps the
current event in the context variable ``faust.streams._current_event``;
``tests/unit/streams/test_faust_compat.py`` fails if that changes.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import faust
import faust.streams
from faust.types import EventT, TopicT


def raw_topic(app: faust.App, *names: str) -> TopicT:
    """A topic (or several, as one channel) of raw bytes keys and values."""
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


@contextmanager
def current_event(event: EventT[bytes]) -> Iterator[None]:
    """Make ``event`` Faust's current event (its partition owns the table keys touched)."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)
