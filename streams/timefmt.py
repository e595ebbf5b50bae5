"""Event times (ms since the epoch, UTC) as the ISO 8601 strings events and evidence carry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache


@lru_cache(maxsize=1 << 16)
def iso(ms: int) -> str:
    """``ms`` as ISO 8601 UTC, e.g. ``2026-11-24T10:00:00+00:00``.

    Cached: a patient's latest readings are formatted again at every evaluation."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def iso_ms(ms: int) -> str:
    """``ms`` as ISO 8601 UTC to the millisecond with ``Z``, e.g. ``2026-11-24T10:00:00.000Z``
    (Nightscout's ``dateString``, FHIR's ``lastUpdated``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def clock_time(at: str, utc_offset: Callable[[int], int] | None = None) -> str:
    """An ISO time as a nurse reads it: the clock time, with its zone: ``23:36 UTC``, or
    in the patient's zone when known, ``00:36 (UTC+01:00)``. ``at`` as given when not ISO."""
    try:
        moment = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return str(at)
    if moment.tzinfo is None:
        return str(at)
    moment = moment.astimezone(UTC)
    if utc_offset is None:
        return f"{moment:%H:%M} UTC"
    minutes = utc_offset(int(moment.timestamp() * 1000))
    local = moment + timedelta(minutes=minutes)
    sign, size = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{local:%H:%M} (UTC{sign}{size // 60:02d}:{size % 60:02d})"
