"""Latencies counted in fixed buckets, so that the figures of several workers add up (a
Prometheus histogram: per bucket the observations at or below it, their count and sum)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: seconds: from a model call of a few windows to a batch held up by a database outage
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Buckets:
    """Observations per bucket (upper bounds ``bounds``, then +Inf), their count and sum."""

    bounds: tuple[float, ...] = SECONDS
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations <= le)`` for every bound and ``+Inf``."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
