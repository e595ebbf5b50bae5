"""A worker with one batch-delivered topic, run as a subprocess: ``python batch_worker.py``.

Env: the stack's BEDSIDE_* variables, plus BATCH_TOPIC. The handler acknowledges every
record, except that a record whose value is ``boom`` makes it raise before acknowledging
anything of its batch: the worker must stop, and that batch must stay uncommitted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from faust.types import Message

from streams.engine import health
from streams.engine.app import create_app, run_worker
from streams.engine.consumer import acknowledge, deliver_batches
from streams.settings import get_settings

app = create_app(get_settings(), parts=(health.register,))  # /ready


async def handle(messages: Sequence[Message]) -> None:
    if any(m.value == b"boom" for m in messages):
        msg = "a handler bug"
        raise RuntimeError(msg)
    acknowledge(app.consumer, messages)


deliver_batches(app, [os.environ["BATCH_TOPIC"]], handle)

if __name__ == "__main__":
    run_worker(app, "info")
