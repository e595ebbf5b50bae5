"""The InfluxDB sink: batched writes to the InfluxDB v2 write API (``POST /api/v2/write``).

``write`` returns once the server has stored every point it will ever store of the batch,
and the points it refused for good; the checkpoint awaits it before the batch's offsets
are acknowledged, so no offset is committed before its points were stored or reported.
Each answer is classified as InfluxDB documents it (``streams.sinks.answers``):

- 204: stored. 422 (partial write: points outside the bucket's retention, a field type
  conflict): the rest is stored; the refused points are reported (dead-letter topic) and
  never resent, so one back-dated record cannot hold the stream.
- 400 (a bad line) and 413 (too large): the batch is split in halves until the bad lines
  are found (reported) and the rest is written.
- 401/403/404 (token, org, bucket): a configuration error. Retried with backoff, loudly:
  ``/ready`` names it, and ``monitoring_degraded`` follows; alarms keep flowing meanwhile.
- 429/503: retried after the server's ``Retry-After``; other 5xx and network errors:
  retried with capped exponential backoff (logged once per outage, not per retry).

Points older than ``influx.retention_days`` are not sent at all (the bucket would drop
them) and are counted (``bedside_series_points_outside_retention_total``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import aiohttp
from mode import Service

from ..settings import InfluxSettings
from ..sinks.answers import Answer, RefusedPoints, Verdict, classify, line_time_ms
from ..sinks.lines import PRECISION

log = logging.getLogger(__name__)

HINTS = {
    401: "check BEDSIDE_INFLUX__TOKEN",
    403: "the token may not write this bucket: check BEDSIDE_INFLUX__TOKEN",
    404: "check BEDSIDE_INFLUX__ORG and BEDSIDE_INFLUX__BUCKET",
}


class InfluxSink(Service):
    """Writes line-protocol batches; retries what may succeed later, reports what never will."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        clock: Any = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.points_written = 0
        self.points_refused = 0  # refused for good by the server (dead-lettered)
        self.points_outside_retention = 0  # not sent: older than the retention
        self.write_failures = 0
        self.blocked_since: float | None = None  # monotonic time the outage began
        self.blocked_reason: str | None = None  # what the server (or the network) said
        self._blocked_status: int | None = None
        self._session: aiohttp.ClientSession | None = None

    async def on_start(self) -> None:
        ca_file = self.settings.ca_file
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000),
            connector=aiohttp.TCPConnector(ssl=context) if context else None,
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def write(self, lines: list[str]) -> list[RefusedPoints]:
        """Write ``lines``; return once every point is stored or refused for good."""
        lines = self._within_retention(lines)
        refused: list[RefusedPoints] = []
        if lines:
            await self._write(lines, refused)
        for item in refused:
            self.points_refused += item.count
            log.error("time-series write: %s", item.describe())
        return refused

    def _within_retention(self, lines: list[str]) -> list[str]:
        days = self.settings.retention_days
        if not days:
            return lines
        oldest = int(self.clock() * 1000) - days * 86_400_000
        kept = [line for line in lines if (line_time_ms(line) or oldest) >= oldest]
        if len(kept) < len(lines):
            self.points_outside_retention += len(lines) - len(kept)
            log.info(
                "%d points older than the %d-day retention not written",
                len(lines) - len(kept),
                days,
            )
        return kept

    async def _write(self, lines: list[str], refused: list[RefusedPoints]) -> None:
        delay = self.retry_initial_s
        attempt = 0
        while True:
            answer = await self._post(lines)
            verdict = answer.verdict
            if verdict in (Verdict.STORED, Verdict.PARTIAL):
                self._recovered(attempt)
                if verdict is Verdict.PARTIAL:
                    refused.append(_partial(lines, answer))
                self.points_written += len(lines) - (
                    refused[-1].count if verdict is Verdict.PARTIAL else 0
                )
                return
            if verdict in (Verdict.BAD_LINES, Verdict.TOO_LARGE):
                self._recovered(attempt)
                if len(lines) == 1:
                    refused.append(
                        RefusedPoints(tuple(lines), 1, answer.status or 0, answer.message, True)
                    )
                    return
                middle = len(lines) // 2
                await self._write(lines[:middle], refused)
                await self._write(lines[middle:], refused)
                return
            attempt += 1
            self._blocked(answer, len(lines))
            await asyncio.sleep(answer.retry_after_s or delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _post(self, lines: list[str]) -> Answer:
        if self._session is None:
            await self.on_start()
        assert self._session is not None
        settings = self.settings
        try:
            async with self._session.post(
                f"{settings.url.rstrip('/')}/api/v2/write",
                params={"org": settings.org, "bucket": settings.bucket, "precision": PRECISION},
                data="\n".join(lines).encode(),
                headers={
                    "Authorization": f"Token {settings.token.get_secret_value()}",
                    "Content-Type": "text/plain; charset=utf-8",
                },
            ) as response:
                body = await response.read()
                return classify(response.status, body, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(Verdict.RETRY, None, type(exc).__name__)

    def _blocked(self, answer: Answer, points: int) -> None:
        self.write_failures += 1
        status = answer.status
        said = f"HTTP {status}: {answer.message}" if status else f"no answer ({answer.message})"
        if status in HINTS:
            said += f" - {HINTS[status]}"
        changed = status != self._blocked_status
        self.blocked_reason, self._blocked_status = said, status
        if self.blocked_since is None or changed:  # once per outage (and status), not per retry
            self.blocked_since = self.blocked_since or time.monotonic()
            log.error(
                "time-series write of %d points failed (%s); retrying every <= %.0f s, "
                "series and commits wait, alarms still flow",
                points,
                said,
                self.retry_max_s,
            )

    def _recovered(self, attempts: int) -> None:
        if self.blocked_since is not None:
            log.warning("time-series database accepts writes again after %d attempts", attempts)
            self.blocked_since = self.blocked_reason = self._blocked_status = None


def _partial(lines: list[str], answer: Answer) -> RefusedPoints:
    """A 422's refused points: the server gives a count; the oldest lines are the likeliest
    (retention), so those are reported."""
    count = min(answer.dropped or 1, len(lines))
    oldest = sorted(lines, key=lambda line: line_time_ms(line) or 0)[:count]
    return RefusedPoints(tuple(oldest), count, answer.status or 422, answer.message, False)
