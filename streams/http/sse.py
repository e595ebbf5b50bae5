"""Server-sent events for the pages: one stream per page.

A stream ends (the page reconnects, signing in again, and reloads what it shows) when the
page falls behind, when its user is removed from the users file or their role or wards
change (checked every ``CHECK_S``: a revoked user's page gets 401 on reconnecting), and
after ``web.stream_max_s`` in any case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web as aioweb
from faust.web import Request

from ..live import DROPPED, Subscribers

KEEPALIVE_S = 15
CHECK_S = 5.0  # how often a stream's user is checked against the users file

#: what to send for a queued item: (event name or None for the default, data) messages
Render = Callable[[dict[str, Any]], Iterable[tuple[str | None, bytes]]]


async def event_stream(
    request: Request,
    sources: list[Subscribers],
    render: Render,
    *,
    still_allowed: Callable[[], bool] = lambda: True,
    max_s: float = 3600.0,
) -> aioweb.StreamResponse:
    """Stream what ``sources`` publish, as ``render`` words it, until the page goes away,
    ``still_allowed`` says its user no longer is, or ``max_s`` has passed.

    A page that stalls is dropped by its source: it gets ``event: reload`` and reconnects,
    reloading everything rather than missing an alarm."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
    for source in sources:
        source.subscribe(queue)
    response = aioweb.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = checked = quiet_since = loop.time()
    try:
        while True:
            now = loop.time()
            if now - checked >= CHECK_S:
                checked = now
                if not still_allowed():
                    await response.write(b"event: signout\ndata: {}\n\n")
                    break
            if now - started >= max_s:
                break  # the page reconnects: its sign-in is checked again
            try:
                item = await asyncio.wait_for(queue.get(), CHECK_S)
            except TimeoutError:
                if loop.time() - quiet_since >= KEEPALIVE_S:
                    quiet_since = loop.time()
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
