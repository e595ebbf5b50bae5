"""What the agents of one worker share: settings, counters and the pipeline's seams."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .schemas.observation import Observation
from .settings import Settings

#: Called with each ingest batch's accepted observations (the patient pipeline plugs in here).
ObservationHandler = Callable[[list[Observation]], Awaitable[None]]


@dataclass
class IngestStats:
    """Counters of the ingest path (exposed on /metrics, read by tests and benchmarks)."""

    records: int = 0
    observations: int = 0
    http_requests: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


@dataclass
class Runtime:
    settings: Settings
    ingest: IngestStats = field(default_factory=IngestStats)
    observation_handlers: list[ObservationHandler] = field(default_factory=list)
