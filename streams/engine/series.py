"""The InfluxDB sink: batched writes through ``influxdb-client``'s v2 write API.

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
import time
from typing import Any

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
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
        self._client: InfluxDBClientAsync | None = None

    async def on_start(self) -> None:
        self._client = InfluxDBClientAsync(
            url=self.settings.url,
            token=self.settings.token.get_secret_value(),
            org=self.settings.org,
            timeout=self.settings.timeout_ms,
            **({"ssl_ca_cert": str(self.settings.ca_file)} if self.settings.ca_file else {}),
        )

    async def on_stop(self) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

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
        """One write; its answer as InfluxDB gave it (status, body, ``Retry-After``)."""
        if self._client is None:
            await self.on_start()
        assert self._client is not None
        try:
            await self._client.write_api().write(
                bucket=self.settings.bucket,
                org=self.settings.org,
                record="\n".join(lines),  # one string: the client serialises a list line by line
                # the client's WritePrecision constants are plain strings like PRECISION
                write_precision=PRECISION,  # type: ignore[arg-type]
            )
        except ApiException as refused:
            if not refused.status:  # the client's own failure: no HTTP answer
                return Answer(Verdict.RETRY, None, str(refused.reason or "no answer")[:200])
            body = refused.body if isinstance(refused.body, bytes) else str(refused.body or "")
            headers: Any = refused.headers or {}
            return classify(
                int(refused.status),
                body if isinstance(body, bytes) else body.encode(),
                headers.get("Retry-After"),
            )
        except Exception as exc:  # noqa: BLE001 - the network or the server went away
            return Answer(Verdict.RETRY, None, type(exc).__name__)
        return Answer(Verdict.STORED, 204, "")

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
