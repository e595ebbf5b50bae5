"""A worker for the table-recovery test, run as a subprocess: ``python recovery_worker.py``.

Env: the stack's BEDSIDE_* variables, plus RECOVERY_TOPIC (source), RECOVERY_DUMP (JSON file
the table is written to) and RECOVERY_MODE: ``count`` applies events; ``verify`` only
recovers the table, applies nothing and dumps it as recovered.

Processing is idempotent per key (events carry a per-key sequence number), so at-least-once
redelivery cannot change the table: what recovery restores must equal what was counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faust

from streams.engine.app import create_app, run_worker
from streams.engine.faust_compat import current_event
from streams.settings import get_settings

settings = get_settings()
app = create_app(settings)
source = app.topic(
    os.environ["RECOVERY_TOPIC"], key_type=bytes, value_type=bytes, value_serializer="raw"
)
totals = app.Table(
    "totals",
    default=lambda: [0, 0],
    partitions=settings.topics.partitions,
    key_type=str,
)
mode = os.environ["RECOVERY_MODE"]
dump = Path(os.environ["RECOVERY_DUMP"])


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> None:
    # Batches make the changelog writes bursty, so the last producer batch of each
    # changelog partition holds many records: what Tansu's ListOffsets gets wrong.
    async for events in stream.take_events(500, within=0.5):
        if mode != "count":
            continue
        for event in events:
            with current_event(event):
                seq, value = map(int, event.value.split(b":"))
                key = event.key.decode()
                last_seq, total = totals[key]
                if seq > last_seq:
                    totals[key] = [seq, total + value]


@app.timer(0.5)
async def write_dump() -> None:
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    state = {key: list(value) for key, value in totals.items()}
    tmp = dump.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(dump)


if __name__ == "__main__":
    run_worker(app, "info")
