"""The stream's counters (exposed on /metrics, read by tests and benchmarks)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..buckets import Buckets
from ..windows.patient import Applied


@dataclass
class IngestStats:
    """Counters of the stream (exposed on /metrics, read by tests and benchmarks)."""

    records: int = 0
    observations: int = 0
    http_requests: int = 0
    http_unavailable: int = 0  # gateway requests answered 503 (the broker took no write)
    rerouted: int = 0
    inserted: int = 0
    duplicates: int = 0
    late: int = 0
    alerts: int = 0
    ticks: int = 0  # clock ticks processed (time-driven alarm transitions)
    actions: int = 0  # acknowledgements and snoozes applied
    actions_ignored: int = 0  # on alarms not open (resolved, unknown)
    processing_errors: int = 0  # records or actions whose application failed (contained)
    quarantined: int = 0  # patient states that could not be used (dead-lettered, reset)
    state_writes: int = 0  # patient windows stored (one changelog record each)
    state_bytes: int = 0  # their stored size, summed: what the changelog carried
    dead_letters: Counter[str] = field(default_factory=Counter)
    # per batch of the patient stream: how long its step took, and how old its oldest record
    # was (since its producer wrote it) when the step had published its alarms
    batch_seconds: Buckets = field(default_factory=Buckets)
    record_age_seconds: Buckets = field(default_factory=Buckets)

    def count(self, applied: Mapping[Applied, int]) -> None:
        self.inserted += applied[Applied.INSERTED]
        self.duplicates += applied[Applied.DUPLICATE]
        self.late += applied[Applied.LATE]
