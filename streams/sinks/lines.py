"""InfluxDB line protocol, built as strings on the hot path (``Point`` caps near 32k/s).

Series: measurement per kind (``vitals``, ``glucose``, ``labs``), tags ``patient_id`` and
``code``, field ``value``, timestamp = event time in **milliseconds**. The same observation
written twice is the same series and timestamp, so replays do not duplicate data.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..schemas.observation import Kind, Observation

PRECISION = "ms"
MEASUREMENTS = {Kind.VITAL: "vitals", Kind.GLUCOSE: "glucose", Kind.LAB: "labs"}

_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})


@lru_cache(maxsize=1 << 16)  # patient ids and codes repeat on every point
def escape_tag(value: str) -> str:
    """Escape a tag key or value (commas, equals signs, spaces, backslashes)."""
    return value.translate(_TAG_ESCAPES)


_PATIENT_TAG = re.compile(r",patient_id=((?:[^,\\ ]|\\.)+)")
_ESCAPED = re.compile(r"\\(.)")


def patient_of(line: str) -> str | None:
    """The ``patient_id`` tag of a line written here, unescaped (``escape_tag`` undone)."""
    found = _PATIENT_TAG.search(line)
    return _ESCAPED.sub(r"\1", found[1]) if found else None


def observation_line(observation: Observation, ts: int | None = None) -> str:
    """One observation as a line of line protocol (``ts``: its event time in ms, if known)."""
    if ts is None:
        ts = int(observation.effective_at.timestamp() * 1000)
    return (
        f"{MEASUREMENTS[observation.kind]},patient_id={escape_tag(observation.patient_id)},"
        f"code={escape_tag(observation.code)} value={float(observation.value)!r} {ts}"
    )
