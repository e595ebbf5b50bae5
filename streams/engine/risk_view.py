"""Every worker's view of every patient's latest state, from the risk topic.

The ward view's rows (``streams.ward_rows``) come from here on any worker. At start it reads the
last ``BACKFILL`` risk events of each partition (a patient silent for longer appears with
its next data), keeps one row per patient (``PATIENTS``, least recently updated dropped
first) and every ``FLUSH_S`` hands the rows that changed to the pages' live subscribers,
one message per page however many events arrived: a page's cost does not grow with the
event rate.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..live import Subscribers
from ..schemas.events import RISK_EVENT
from ..settings import KafkaSettings
from ..ward_rows import ward_row
from .follower import TopicFollower

BACKFILL = 5_000  # risk events per partition read at start (8 us each to apply: 0.04 s)
PATIENTS = 50_000  # rows kept
FLUSH_S = 1.0


class WardView(TopicFollower):
    schema = RISK_EVENT

    def __init__(self, kafka: KafkaSettings, topic: str, **kwargs: Any) -> None:
        super().__init__(kafka, topic, backfill=BACKFILL, **kwargs)
        self.rows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.changed: dict[str, dict[str, Any]] = {}
        self.subscribers = Subscribers()

    def apply(self, event: dict[str, Any]) -> None:
        row = ward_row(event)
        patient = row["patient_id"]
        known = self.rows.get(patient)
        if known is not None and (known.get("at") or "") > (row.get("at") or ""):
            return  # an older event (backfill of another partition's reroute): keep newer
        self.rows[patient] = row
        self.rows.move_to_end(patient)
        while len(self.rows) > PATIENTS:
            self.rows.popitem(last=False)
        self.changed[patient] = row

    def flush(self) -> None:
        """Hand the rows changed since the last flush to the subscribers, as one message."""
        if self.changed:
            rows, self.changed = list(self.changed.values()), {}
            self.subscribers.publish({"rows": rows})

    async def on_start(self) -> None:
        await super().on_start()
        self.add_future(self._flush_every())

    async def _flush_every(self) -> None:
        while not self.should_stop:
            await self.sleep(FLUSH_S)
            self.flush()
