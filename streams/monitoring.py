"""Is monitoring working? What the worker knows about its own health, in one place.

A monitoring service must never go quiet without saying so. The worker is *degraded* when:

- the broker does not answer, or one of the worker's own broker clients (output
  producers, the alert view) has not connected yet (alarms cannot be published or shown);
- the time-series database refuses writes (series and commits wait; alarms still flow);
- records wait on the patient topics but no batch has been stored for ``degraded_after_s``
  (the stream makes no progress).

``/ready`` is false and lists the problems while any holds; once one has lasted
``stream.degraded_after_s`` a ``monitoring_degraded`` alert event goes to the alerts topic
(and the care-team page shows a banner from ``/ready``); a ``resolved`` one follows.
Pure: the health agent feeds it observations and the wall clock.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .access.signing import GENESIS
from .schemas.events import ALERT_SCHEMA_VERSION

DEGRADED_KIND = "monitoring_degraded"


class SinkState(Protocol):
    blocked_since: float | None
    blocked_reason: str | None
    write_failures: int


class BrokerClient(Protocol):
    @property
    def connected(self) -> bool: ...


@dataclass
class Monitor:
    """The worker's health, updated by the stream and the health agent."""

    sink: SinkState | None = None
    unstored_points: int = 0  # computed, not yet accepted by the database
    batches_stored: int = 0
    records_stored: int = 0  # consumed records whose every output is stored (acknowledged)
    last_stored: float = field(default_factory=time.monotonic)
    broker_down_since: float | None = None
    lag: int = 0  # records waiting on the owned patient partitions
    degraded_since: float | None = None  # wall time (s) the current problems began
    alert_id: str | None = None  # the open monitoring_degraded alert, if any
    clients: list[BrokerClient] = field(default_factory=list)  # producers, alert view
    # the open monitoring_degraded alarm's audit chain (opened, then resolved)
    audit_seq: int = 0
    audit_prev: str = GENESIS

    def stored(self, points: int, records: int = 0) -> None:
        self.unstored_points -= points
        self.batches_stored += 1
        self.records_stored += records
        self.last_stored = time.monotonic()

    def problems(self, stall_s: float, now: float | None = None) -> list[str]:
        """What is wrong now, in words (empty: monitoring works)."""
        now = time.monotonic() if now is None else now
        found = []
        if self.broker_down_since is not None:
            found.append(f"broker unreachable for {now - self.broker_down_since:.0f} s")
        waiting = sum(not client.connected for client in self.clients)
        if waiting:
            found.append(f"{waiting} of {len(self.clients)} broker clients not connected yet")
        if self.sink is not None and self.sink.blocked_since is not None:
            said = f": {self.sink.blocked_reason}" if self.sink.blocked_reason else ""
            found.append(
                f"time-series database refuses writes for {now - self.sink.blocked_since:.0f} s"
                f"{said} ({self.unstored_points} points waiting; alarms still flow)"
            )
        if self.lag > 0 and now - self.last_stored > stall_s:
            found.append(
                f"no progress for {now - self.last_stored:.0f} s with {self.lag} records waiting"
            )
        return found

    def transition(
        self, problems: list[str], degraded_after_s: float, worker: str, wall_s: float
    ) -> dict[str, Any] | None:
        """The ``monitoring_degraded`` event to publish now (opened or resolved), or None."""
        since = self.degraded_since
        if problems:
            if since is None:
                since = self.degraded_since = wall_s
            if self.alert_id is None and wall_s - since >= degraded_after_s:
                self.alert_id = hashlib.sha256(
                    f"{worker}|{DEGRADED_KIND}|{since}".encode()
                ).hexdigest()[:24]
                return degraded_event(self.alert_id, worker, problems, since, wall_s)
            return None
        if not problems and self.degraded_since is not None:
            since, alert, self.degraded_since, self.alert_id = (
                self.degraded_since,
                self.alert_id,
                None,
                None,
            )
            if alert is not None:
                return degraded_event(alert, worker, [], since, wall_s)
        return None


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


def degraded_event(
    alert_id: str, worker: str, problems: list[str], since: float, now: float
) -> dict[str, Any]:
    """An alert event about the worker, not a patient (``patient_id`` is ``*``)."""
    resolved = not problems
    return {
        "alert_id": alert_id,
        "patient_id": "*",
        "scope": "worker",
        "worker": worker,
        "kind": DEGRADED_KIND,
        "severity": "critical",
        "opened_at": _iso(since),
        "event_time": _iso(now),
        "state": "resolved" if resolved else "open",
        "transition": "resolved" if resolved else "opened",
        "level": 0,
        "target": "care_team",
        "reason": "Monitoring works again."
        if resolved
        else "MONITORING DEGRADED: alarms may be delayed or missing: " + "; ".join(problems),
        "evidence": {"problems": problems},
        "score": None,
        "rule_or_model_version": "monitoring-1",
        "schema_version": ALERT_SCHEMA_VERSION,
    }
