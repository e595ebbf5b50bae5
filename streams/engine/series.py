"""The InfluxDB sink: batched asynchronous writes through ``influxdb-client``'s v2 write API.

``write`` returns only once the server accepted the lines. The agent awaits it before the
batch's offsets are acknowledged, so no offset is committed before its points were
accepted. During an outage ``write`` retries with capped exponential backoff (logging the
outage once, not per retry); later batches are computed and their alarms sent meanwhile, up
to the stream's bound of unstored work, and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from mode import Service

from ..settings import InfluxSettings
from ..sinks.lines import PRECISION

log = logging.getLogger(__name__)


class InfluxSink(Service):
    """Writes line-protocol batches; retries until accepted, never drops."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.points_written = 0
        self.write_failures = 0
        self.blocked_since: float | None = None  # monotonic time the outage began
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

    async def write(self, lines: list[str]) -> None:
        """Write ``lines``; return once accepted, retrying through outages."""
        if not lines:
            return
        if self._client is None:
            await self.on_start()
        assert self._client is not None
        writer = self._client.write_api()
        body = "\n".join(lines)  # one string: the client serialises a list line by line
        delay = self.retry_initial_s
        attempt = 0
        while True:
            try:
                await writer.write(
                    bucket=self.settings.bucket,
                    org=self.settings.org,
                    record=body,
                    # the client's WritePrecision constants are plain strings like PRECISION
                    write_precision=PRECISION,  # type: ignore[arg-type]
                )
            except Exception as exc:  # noqa: BLE001 - any failure: hold the batch and retry
                attempt += 1
                self.write_failures += 1
                if self.blocked_since is None:  # once per outage, not per retry
                    self.blocked_since = time.monotonic()
                    log.error(
                        "InfluxDB write of %d points failed (%s); retrying every <= %.0f s, "
                        "series and commits wait, alarms still flow",
                        len(lines),
                        type(exc).__name__,
                        self.retry_max_s,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self.blocked_since is not None:
                log.warning("InfluxDB accepts writes again after %d failed attempts", attempt)
                self.blocked_since = None
            self.points_written += len(lines)
            return
