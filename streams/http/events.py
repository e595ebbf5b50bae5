"""Server-sent events for the pages: one stream per page, ended when the page falls behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web as aioweb
from faust.web import Request

from ..engine.follower import DROPPED, Subscribers

KEEPALIVE_S = 15

#: what to send for a queued item: (event name or None for the default, data) messages
Render = Callable[[dict[str, Any]], Iterable[tuple[str | None, bytes]]]


async def event_stream(
    request: Request, sources: list[Subscribers], render: Render
) -> aioweb.StreamResponse:
    """Stream what ``sources`` publish, as ``render`` words it, until the page goes away.

    A page that stalls is dropped by its source: it gets ``event: reload`` and reconnects,
    reloading everything rather than missing an alarm."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
    for source in sources:
        source.subscribe(queue)
    response = aioweb.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)  # type: ignore[arg-type]
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is DROPPED:
                await response.write(b"event: reload\ndata: {}\n\n")
                break
            for name, data in render(item):
                head = b"event: " + name.encode() + b"\n" if name else b""
                await response.write(head + b"data: " + data + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for source in sources:
            source.discard(queue)
    return response
