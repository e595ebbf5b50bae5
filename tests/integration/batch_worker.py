"""A worker with one batch-delivered topic, run as a subprocess: ``python batch_worker.py``.

Env: the stack's BEDSIDE_* variables, plus BATCH_TOPIC. The handler acknowledges every
record, except that a record whose value is ``boom`` makes it raise before acknowledging
anything of its batch: the worker must stop, and that batch must stay uncommitted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from faust.types import Message

from streams.access.signing import Keys
from streams.alerts.quality import QualityStats
from streams.engine import health
from streams.engine.alert_view import AlertView
from streams.engine.app import chosen_profile, create_app, run_worker
from streams.engine.consumer import acknowledge, deliver_batches
from streams.engine.metrics import Figures
from streams.monitoring import Monitor
from streams.processing.stats import IngestStats
from streams.scoring.service import ModelScoring
from streams.settings import ScoringSettings, get_settings

settings = get_settings()
app = create_app(settings)
figures = Figures(
    settings,
    IngestStats(),
    QualityStats(),
    Monitor(),
    ModelScoring(ScoringSettings(models=[])),
    AlertView(settings.kafka, settings.topics.alerts),  # not started: no alarms to count
)
health.register(app, figures, Keys.random(), chosen_profile(settings), None)  # /ready


async def handle(messages: Sequence[Message]) -> None:
    if any(m.value == b"boom" for m in messages):
        msg = "a handler bug"
        raise RuntimeError(msg)
    acknowledge(app.consumer, messages)


deliver_batches(app, [os.environ["BATCH_TOPIC"]], handle)

if __name__ == "__main__":
    run_worker(app, "info")
