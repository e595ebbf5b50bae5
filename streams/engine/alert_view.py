"""Every worker's view of all alarms, from the alerts topic (all partitions, no group).

The care-team pages, ``GET /v1/alerts`` and ``POST /v1/alerts/{id}/ack`` answer from it on
any worker, whichever worker owns the patient. It reads the topic from the beginning at
start, keeps the latest event of each alarm (the open ones and a bounded memory of resolved
ids), each patient's recent transitions (the patient page's alert history, bounded) and
hands every new event to the pages' live subscribers (server-sent events).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Any

from ..live import DROPPED, Subscribers
from ..schemas.events import ALERT_EVENT
from ..settings import KafkaSettings
from .follower import TopicFollower

__all__ = ["DROPPED", "AlertView"]

RESOLVED_MEMORY = 100_000
HISTORY_PER_PATIENT = 100  # transitions kept per patient for the patient page
HISTORY_PATIENTS = 20_000  # patients whose history is kept (least recently changed go)


def _replaces_unreadable_state(event: dict[str, Any]) -> bool:
    evidence = event.get("evidence") or {}
    return (
        event.get("kind") == "monitoring_fault"
        and event.get("transition") == "opened"
        and evidence.get("earlier_alarms") == "unreadable"
    )


class AlertView(TopicFollower):
    """Latest state per alert id; subscribers get each event as it arrives."""

    schema = ALERT_EVENT

    def __init__(self, kafka: KafkaSettings, topic: str, **kwargs: Any) -> None:
        super().__init__(kafka, topic, **kwargs)
        self.open: dict[str, dict[str, Any]] = {}
        self.resolved: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers = Subscribers()
        self.history: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.events = 0

    def apply(self, event: dict[str, Any]) -> None:
        alert_id = event["alert_id"]
        self.events += 1
        if event["state"] == "resolved":
            self.open.pop(alert_id, None)
            self.resolved[alert_id] = event
            while len(self.resolved) > RESOLVED_MEMORY:
                self.resolved.popitem(last=False)
        else:
            self.open[alert_id] = event
        self._remember(event)
        self.subscribers.publish(event)
        if _replaces_unreadable_state(event):
            self._close_earlier(event)

    def _close_earlier(self, fault: dict[str, Any]) -> None:
        """The patient's state was quarantined unread: the alarms it held are gone from the
        worker, so they are shown closed here (the fault alarm says why)."""
        patient = fault["patient_id"]
        for alert_id, event in list(self.open.items()):
            if event["patient_id"] == patient and alert_id != fault["alert_id"]:
                self.apply(
                    {
                        **event,
                        "state": "resolved",
                        "transition": "resolved",
                        "event_time": fault["event_time"],
                        "reason": "Closed: this patient's stored state was quarantined.",
                        "evidence": {"closed_by": "quarantine"},
                    }
                )

    def _remember(self, event: dict[str, Any]) -> None:
        patient = event["patient_id"]
        trail = self.history.get(patient)
        if trail is None:
            trail = self.history[patient] = deque(maxlen=HISTORY_PER_PATIENT)
            while len(self.history) > HISTORY_PATIENTS:
                self.history.popitem(last=False)
        else:
            self.history.move_to_end(patient)
        if event not in trail:
            trail.append(event)  # a redelivered event is shown once

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self.open.get(alert_id) or self.resolved.get(alert_id)

    def subscribe(self, queue: asyncio.Queue[Any] | None = None) -> asyncio.Queue[Any]:
        return self.subscribers.subscribe(queue)
