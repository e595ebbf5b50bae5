"""A 200,000-event burst over 1,000 patients: nothing accepted is lost, nothing in time is late.

The glucose topic's backlog is produced before the vitals topic's, so the topics are hours
apart in event time: lateness measured across topics once classed 10,181 in-order
observations late (out of windows and rules).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from deploy.benchkit import burst
from streams.engine.broker import ensure_bedside_topics
from streams.settings import Settings, get_settings

BEDSIDE = shutil.which("bedside", path=str(Path(sys.executable).parent)) or "bedside"


def test_a_burst_stores_every_observation_once_and_classes_none_late(
    stack_settings: Settings,
    stack_env_vars: dict[str, str],
    port: Callable[[], int],
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:6]
    prefix = f"burst{run}."
    asyncio.run(
        ensure_bedside_topics(stack_settings.kafka, get_settings(topics={"prefix": prefix}).topics)
    )
    web = port()
    env = {
        **os.environ,
        **stack_env_vars,
        "BEDSIDE_TOPICS__PREFIX": prefix,
        "BEDSIDE_WORKER__APP_ID": f"burst-{run}",
        "BEDSIDE_WORKER__DATA_DIR": str(tmp_path / "data"),
        "BEDSIDE_WORKER__LOG_LEVEL": "warning",
        "BEDSIDE_WEB__PORT": str(web),
        "BEDSIDE_SCORING__MODELS": "[]",
    }
    result = burst(
        stack_settings, [BEDSIDE, "worker"], env, web, tmp_path / "worker.log", 1000, 200_000
    )
    assert result["burst_events"] == 200_000
    assert result["burst_inserted"] == 200_000, result
    assert result["burst_late"] == 0 and result["burst_duplicates"] == 0, result
    assert result["burst_dead_letters"] == 0, result
    assert result["burst_points_stored"] == result["burst_points_distinct"] == 200_000, result
