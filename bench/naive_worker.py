"""Reference Faust agents for bench/stream.py, run as ``python bench/naive_worker.py worker``.

BENCH_MODE=naive (default): the naive per-event agent the stream is compared with,
JSON -> faust.Record -> one table write per event. BENCH_MODE=floor: a ``take_events``
agent that only counts, i.e. what Faust's consumer and stream machinery cost alone.
"""

from __future__ import annotations

import os

import faust

from streams.app import create_app, run_worker
from streams.settings import get_settings


class Reading(faust.Record, serializer="json"):
    patient_id: str
    code: str
    value: float
    unit: str
    effective_at: str
    source: str
    event_id: str


app = create_app(get_settings(), agent_modules=())
topic = app.topic(os.environ["BENCH_TOPIC"], value_type=Reading)
counts = app.Table("naive-counts", default=int, partitions=int(os.environ["BENCH_PARTITIONS"]))
seen = {"events": 0}


if os.environ.get("BENCH_MODE", "naive") == "floor":
    raw = app.topic(os.environ["BENCH_TOPIC"], value_type=bytes, value_serializer="raw")

    @app.agent(raw)
    async def floor(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(5000, within=0.2):  # type: ignore[attr-defined]
            seen["events"] += len(events)

else:

    @app.agent(topic)
    async def count(stream: faust.StreamT[Reading]) -> None:
        async for reading in stream:
            counts[reading.patient_id] += 1
            seen["events"] += 1


@app.page("/stats")
async def stats(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    return web.json({"observations": seen["events"]})


if __name__ == "__main__":
    run_worker(app, "warning")
