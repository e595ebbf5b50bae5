"""A personal baseline per vital sign: robust statistics of hourly means over 3 days.

Each hour's samples are averaged (sum and count, so arrival order does not matter); the
baseline is the median of the last 72 hourly means and its spread 1.4826 x their median
absolute deviation (the MAD scaled to a standard deviation for normal data). Medians and
MADs ignore a few abnormal hours, so an acute episode does not become "normal" within hours.
A deviation (robust z-score) is reported once at least 6 hours are known.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

HOUR_MS = 3_600_000
KEEP_HOURS = 72
MIN_HOURS = 6
MAD_TO_SD = 1.4826


@dataclass
class Baseline:
    # hour -> (sum in hundredths, count): integer sums, so arrival order cannot change them
    hours: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, t_ms: int, value: float) -> None:
        hour = t_ms // HOUR_MS
        total, count = self.hours.get(hour, (0, 0))
        self.hours[hour] = (total + round(value * 100), count + 1)
        if len(self.hours) > KEEP_HOURS:
            newest = max(self.hours)
            self.hours = {h: v for h, v in self.hours.items() if h > newest - KEEP_HOURS}

    def stats(self) -> tuple[float, float] | None:
        """(median, robust sd) of the hourly means; None with fewer than 6 hours."""
        if len(self.hours) < MIN_HOURS:
            return None
        means = [total / 100 / count for total, count in self.hours.values()]
        center = statistics.median(means)
        spread = MAD_TO_SD * statistics.median(abs(m - center) for m in means)
        return center, spread

    def deviation(self, value: float) -> float | None:
        """Robust z-score of ``value``; None until the baseline is established."""
        stats = self.stats()
        if stats is None:
            return None
        center, spread = stats
        return (value - center) / max(spread, 1e-6 + abs(center) * 0.01)

    @classmethod
    def from_list(cls, flat: list[int]) -> Baseline:
        """A baseline as formats 2 and 3 stored it: [hour, sum, count, ...] (migration only)."""
        return cls({flat[i]: (flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)})
