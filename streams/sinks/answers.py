"""What an InfluxDB v2 write answer means for the batch that was sent, as InfluxDB documents it.

``POST /api/v2/write`` (InfluxDB 2.x and 3.x) answers:

- 204: every point written. Done.
- 422: partial write, ``dropped N`` points (outside the bucket's retention, or a field
  type conflict); the others are stored. The refused points are reported (dead letter) and
  never resent.
- 400: a line could not be parsed (InfluxDB 2.x writes nothing of the batch). The batch is
  split to find the bad lines; they are reported, the rest is written.
- 413: the request is too large. It is split and the halves written.
- 401, 403 (token refused), 404 (no such org or bucket): a configuration error. Degraded,
  loud, retried with backoff.
- 429, 503: overloaded or not ready. Retried after ``Retry-After`` (seconds) when given.
- other 5xx, no answer: the server or the network failed. Retried with backoff.

Pure: the sink passes in what came back and acts on the verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import orjson


class Verdict(StrEnum):
    STORED = "stored"
    PARTIAL = "partial"  # some points refused for good; the rest stored
    BAD_LINES = "bad_lines"  # split to find them
    TOO_LARGE = "too_large"  # split
    CONFIGURATION = "configuration"  # token, org or bucket: retry, loudly
    RETRY = "retry"  # transient: retry (after Retry-After when given)


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    status: int | None  # None: no HTTP answer at all
    message: str  # the server's own words (its JSON "message"), bounded
    dropped: int = 0  # points the server says it dropped (422)
    retry_after_s: float | None = None


_DROPPED = re.compile(r"dropped[= ](\d+)")
MAX_MESSAGE = 500
MAX_RETRY_AFTER_S = 300.0


def server_message(body: bytes) -> str:
    """The ``message`` of InfluxDB's JSON error body, else the body's text (bounded)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        text: str = decoded["message"]
    else:
        text = body.decode("utf-8", "replace")
    return text.strip()[:MAX_MESSAGE]


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by InfluxDB)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def classify(status: int, body: bytes, retry_after_header: str | None = None) -> Answer:
    """The verdict on one write answer."""
    message = server_message(body) if status >= 300 else ""
    if 200 <= status < 300:
        return Answer(Verdict.STORED, status, "")
    if status == 422:
        found = _DROPPED.search(message)
        return Answer(Verdict.PARTIAL, status, message, dropped=int(found[1]) if found else 0)
    if status == 400:
        return Answer(Verdict.BAD_LINES, status, message)
    if status == 413:
        return Answer(Verdict.TOO_LARGE, status, message)
    if status in (401, 403, 404):
        return Answer(Verdict.CONFIGURATION, status, message)
    wait = retry_after(retry_after_header) if status in (429, 503) else None
    return Answer(Verdict.RETRY, status, message, retry_after_s=wait)


def line_time_ms(line: str) -> int | None:
    """The timestamp (ms) ending a line of Bedside's line protocol."""
    _, _, last = line.rpartition(" ")
    return int(last) if last.isdigit() else None


@dataclass(frozen=True)
class RefusedPoints:
    """Points the time-series database refused for good (never resent)."""

    lines: tuple[str, ...]  # the refused lines; for a 422, the likeliest: the oldest ``count``
    count: int
    status: int
    message: str
    exact: bool  # True: these very lines were refused; False: the server gave only a count

    def describe(self) -> str:
        times = [t for line in self.lines if (t := line_time_ms(line)) is not None]
        span = ""
        if times:
            oldest, newest = (_iso_ms(min(times)), _iso_ms(max(times)))
            span = f"; event times {oldest} .. {newest}"
        which = "" if self.exact else " (the oldest of the batch: the server gave a count)"
        return (
            f"the time-series database refused {self.count} points for good "
            f"(HTTP {self.status}: {self.message}){span}{which}; not retried"
        )


def _iso_ms(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat()
