"""``bedside audit verify``: is every patient's alarm audit trail whole and unaltered?

Reads the alerts topic from its start to its current end and checks each patient's chain
(``streams.access.audit``) with the deployment's signing key. Exit status 0 when every chain
is whole, 1 when any event was changed, forged or removed. A chain whose oldest events are
past the topic's retention is whole from where it starts ("starts at seq N"); an event
published again is counted as duplicated.
"""

from __future__ import annotations

import asyncio
from typing import Any

from streams.access.audit import PatientTrail, verify
from streams.access.signing import Keys
from streams.settings import Settings

from .deadletters import read_topic


def audit(settings: Settings) -> dict[str, PatientTrail]:
    secret = settings.security.signing_key
    if secret is None:
        msg = "BEDSIDE_SECURITY__SIGNING_KEY is not set: the chain cannot be verified"
        raise ValueError(msg)
    events = asyncio.run(read_topic(settings, settings.topics.alerts, with_key=False))
    return verify(Keys.derive(secret.get_secret_value()).audit, events)


def report(trails: dict[str, PatientTrail]) -> dict[str, Any]:
    broken = {p: t.problems for p, t in trails.items() if t.problems}
    return {
        "patients": len(trails),
        "events": sum(t.events for t in trails.values()),
        "chained": sum(t.length for t in trails.values()),
        "redelivered": sum(t.redelivered for t in trails.values()),
        "duplicated": sum(t.duplicated for t in trails.values()),
        "legacy_links": sum(t.legacy for t in trails.values()),
        # chains whose oldest links are past the topic's retention: where each starts
        "starts_after_retention": {p: t.starts_at for p, t in trails.items() if t.starts_at > 1},
        "broken_patients": len(broken),
        "problems": broken,
        "ok": not broken,
    }
