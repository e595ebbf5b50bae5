"""Event times (ms since the epoch, UTC) as the ISO 8601 strings events and evidence carry."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=1 << 16)
def iso(ms: int) -> str:
    """``ms`` as ISO 8601 UTC, e.g. ``2026-11-24T10:00:00+00:00``.

    Cached: a patient's latest readings are formatted again at every evaluation."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
