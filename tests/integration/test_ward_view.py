"""The ward view follows every partition of the risk topic, on either broker.

Its rows come from a follower of ``bedside.risk`` that assigns itself the topic's partitions
(no consumer group). On Apache Kafka a consumer's own metadata holds nothing for a topic it
does not subscribe to, so a follower that took its partitions from there followed none and
the ward view stayed empty; the partitions are now asked of the broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from care_team import USERS
from stream_helpers import produce
from stream_helpers import recent_cgm as cgm

from streams.engine.broker import partition_of
from streams.settings import Settings

BOTH_BROKERS = True  # on Tansu (embedded profile) and Apache Kafka (kafka profile)


def test_the_ward_view_has_a_row_for_patients_of_every_partition(
    spawn_worker: Callable[..., Any], stack_settings: Settings
) -> None:
    worker = spawn_worker(BEDSIDE_SCORING__MODELS="[]")
    worker.wait_ready()
    partitions = stack_settings.topics.partitions
    run, patients = uuid.uuid4().hex[:6], {}
    for n in range(10_000):  # one patient on each partition
        patient = f"ward-{run}-{n}"
        patients.setdefault(partition_of(patient.encode(), partitions), patient)
        if len(patients) == partitions:
            break
    asyncio.run(produce(stack_settings, [cgm(p, 0, 120) for p in patients.values()]))
    request = urllib.request.Request(
        f"{worker.url}/v1/ward", headers={"Authorization": f"Bearer {USERS['admin-all'][2]}"}
    )
    deadline, shown = time.monotonic() + 60, set()
    while time.monotonic() < deadline and shown != set(patients.values()):
        with urllib.request.urlopen(request, timeout=10) as answer:
            rows = json.loads(answer.read())["patients"]
        shown = {r["patient_id"] for r in rows} & set(patients.values())
        time.sleep(0.5)
    assert shown == set(patients.values()), sorted(set(patients.values()) - shown)
