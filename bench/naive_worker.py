"""Reference Faust agents for bench/stream.py, run as ``python bench/naive_worker.py worker``.

BENCH_MODE=naive (default): the naive per-event agent the stream is compared with,
JSON -> faust.Record -> one table write per event. BENCH_MODE=floor: a ``take_events``
agent that only counts, i.e. what Faust's consumer and stream machinery cost alone.
BENCH_MODE=batch: Bedside's batch delivery (streams/engine/consumer.py) to a handler that only
counts and acknowledges: the floor of the patient stream's consumer path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import faust
from faust.types import Message

from streams.engine.app import create_app, run_worker
from streams.engine.consumer import acknowledge, deliver_batches
from streams.settings import get_settings


class Reading(faust.Record, serializer="json"):
    patient_id: str
    code: str
    value: float
    unit: str
    effective_at: str
    source: str
    event_id: str


app = create_app(get_settings())
topic = app.topic(os.environ["BENCH_TOPIC"], value_type=Reading)
counts = app.Table("naive-counts", default=int, partitions=int(os.environ["BENCH_PARTITIONS"]))
seen = {"events": 0}


MODE = os.environ.get("BENCH_MODE", "naive")
if MODE == "batch":

    async def count_batch(messages: Sequence[Message]) -> None:
        seen["events"] += len(messages)
        acknowledge(app.consumer, messages)

    deliver_batches(app, [os.environ["BENCH_TOPIC"]], count_batch)

elif MODE == "floor":
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
