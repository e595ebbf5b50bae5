"""``bedside audit verify``: is every patient's alarm audit trail whole and unaltered?

Reads the alerts topic from its start to its current end and checks each patient's chain
(``streams.access.audit``) with the deployment's signing key. Exit status 0 when every chain
is whole, 1 when any event was changed, forged or removed.
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
        "broken_patients": len(broken),
        "problems": broken,
        "ok": not broken,
    }
