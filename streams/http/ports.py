"""What the HTTP routes are handed by the worker's composition root (``streams.worker``).

The routes see the engine's views, producer and table only through these shapes, so HTTP
sits beside the engine adapter, not on it: the engine never imports HTTP, HTTP never
imports the engine, and each handler is given exactly what it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..live import Subscribers
from ..processing.ports import RecordSink

__all__ = ["AlarmBoard", "RecordSink", "StoredWindows", "WardBoard"]


class AlarmBoard(Protocol):
    """Every alarm's latest event, from the alerts topic (``engine.alert_view.AlertView``)."""

    @property
    def open(self) -> Mapping[str, dict[str, Any]]: ...

    @property
    def history(self) -> Mapping[str, Any]: ...  # patient -> recent transitions

    @property
    def subscribers(self) -> Subscribers: ...

    @property
    def events(self) -> int: ...

    def get(self, alert_id: str) -> dict[str, Any] | None: ...


class WardBoard(Protocol):
    """Each patient's latest row, from the risk topic (``engine.risk_view.WardView``)."""

    @property
    def rows(self) -> Mapping[str, dict[str, Any]]: ...

    @property
    def connected(self) -> bool: ...  # reading the topic now

    @property
    def subscribers(self) -> Subscribers: ...


class StoredWindows(Protocol):
    """The patient-window table, read by key (``engine.stream``)."""

    def get(self, key: bytes) -> bytes | None: ...
