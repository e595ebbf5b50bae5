"""A worker's server-sent-event stream, opened as a page opens it, read by a thread."""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def event_stream(port: int, path: str, token: str) -> Iterator[queue.Queue[bytes]]:
    """The lines of ``path`` on the worker at ``port`` (a bearer ``token``), as they come.

    A thread reads them, so a quiet stream (keep-alives come every 15 s) never blocks the
    caller's deadline; leaving the block shuts the socket, which ends the read at once."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    stream = connection.getresponse()
    assert stream.status == 200, stream.status
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # shut at the end
            for line in stream:
                lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        if connection.sock is not None:  # wakes the reader: its read ends at once
            connection.sock.shutdown(socket.SHUT_RDWR)
        reader.join(timeout=5)
        connection.close()
