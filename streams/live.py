"""Live subscribers of a view: one bounded queue per open page, a stalled one dropped.

The alert and ward views (``streams.engine``) publish into it; the pages' event streams
(``streams.http.sse``) read from it. Plain asyncio: no engine, no HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Put in a stalled subscriber's queue when it is dropped: its stream ends, the page
#: reconnects and reloads instead of showing "live" without new events.
DROPPED: dict[str, Any] = {"dropped": True}


class Subscribers:
    """Live subscribers of a view (one queue per open page); a stalled one is dropped."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self, queue: asyncio.Queue[dict[str, Any]] | None = None) -> asyncio.Queue[Any]:
        queue = queue if queue is not None else asyncio.Queue(1000)
        self.queues.add(queue)
        return queue

    def __contains__(self, queue: object) -> bool:
        return queue in self.queues

    def discard(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self.queues):
            if queue.full():  # a stalled page: drop it, it reconnects and reloads
                self.queues.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(DROPPED)
            else:
                queue.put_nowait(event)
