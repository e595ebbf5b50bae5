"""A local HTTP double of InfluxDB 2.7's write API, for the answers VictoriaMetrics never gives.

The local stack's time-series server accepts every write, so the sink's handling of
InfluxDB's refusals is tested against this double instead. It answers ``POST
/api/v2/write`` as InfluxDB 2.7 documents and does (status, JSON body, headers):

- 204 when every point is written;
- 401 ``{"code":"unauthorized","message":"unauthorized access"}`` for another token;
- 404 ``bucket "x" not found`` for another org or bucket;
- 413 ``points batch is too large`` over ``max_body`` bytes;
- 400 ``unable to parse '<line>': ...`` when a line is not line protocol (nothing written);
- 422 ``partial write: points beyond retention policy dropped=N`` for points older than
  ``retention_s`` (the other points are written);
- queued one-off answers (``answers``), e.g. 429/503 with ``Retry-After``.

Every request is recorded (``requests``: status answered, lines sent).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

LINE = re.compile(r"^[A-Za-z_][\w]*(,[^\s=,]+=[^\s,]+)* [^\s=]+=[^\s]+ \d{1,19}$")


@dataclass
class Forced:
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class InfluxDouble:
    token: str = "double-token"
    org: str = "bedside"
    bucket: str = "bedside"
    retention_s: float | None = None
    max_body: int = 25 * 1024 * 1024
    stored: list[str] = field(default_factory=list)
    requests: list[tuple[int, int]] = field(default_factory=list)  # (status, lines)
    answers: deque[Forced] = field(default_factory=deque)
    port: int = 0

    # -- the server, on its own loop in a thread -----------------------------------------
    def start(self) -> InfluxDouble:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application(client_max_size=1 << 30)
            app.router.add_post("/api/v2/write", self._write)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the InfluxDB double did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the write API -------------------------------------------------------------------
    async def _write(self, request: web.Request) -> web.Response:
        body = await request.read()
        lines = [line for line in body.decode("utf-8", "replace").split("\n") if line]
        response = self._answer(request, body, lines)
        self.requests.append((response.status, len(lines)))
        return response

    def _answer(self, request: web.Request, body: bytes, lines: list[str]) -> web.Response:
        if self.answers:
            forced = self.answers.popleft()
            return error(forced.status, forced.code, forced.message, forced.headers)
        if request.headers.get("Authorization") != f"Token {self.token}":
            return error(401, "unauthorized", "unauthorized access")
        query = request.query
        if query.get("org") != self.org:
            return error(404, "not found", f'organization name "{query.get("org")}" not found')
        if query.get("bucket") != self.bucket:
            return error(404, "not found", f'bucket "{query.get("bucket")}" not found')
        if len(body) > self.max_body:
            return error(413, "request too large", "unable to read data: points batch is too large")
        for line in lines:
            if not LINE.match(line):
                return error(
                    400, "invalid", f"unable to parse '{line[:200]}': invalid field format"
                )
        precision = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "ns": 1e-9}[query.get("precision", "ns")]
        oldest = None if self.retention_s is None else time.time() - self.retention_s
        kept = [line for line in lines if oldest is None or _at(line) * precision >= oldest]
        self.stored.extend(kept)
        dropped = len(lines) - len(kept)
        if dropped:
            return error(
                422,
                "unprocessable entity",
                "failure writing points to database: partial write: points beyond retention "
                f"policy dropped={dropped}",
            )
        return web.Response(status=204)


def _at(line: str) -> int:
    return int(line.rpartition(" ")[2])


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    """An error answer as InfluxDB 2.7 writes it."""
    return web.Response(
        status=status,
        body=orjson.dumps({"code": code, "message": message}),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Platform-Error-Code": code,
            **(headers or {}),
        },
    )
