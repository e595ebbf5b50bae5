"""After the session's integration tests (this module runs late): every alarm event any of
their workers published is sealed, and every chain on the session's alerts topic verifies.

The workers of the earlier modules ran every path that emits alarm events: rules, models,
acknowledgements and snoozes, ticks, quarantined states, poison records, restarts, replays
after kill -9, database and broker outages (``monitoring_degraded``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from streams.settings import Settings


def test_every_alarm_event_of_the_session_is_sealed_and_every_chain_verifies(
    stack_env_vars: dict[str, str],
    stack_settings: Settings,
    run_bedside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_bedside("audit", "verify", env=stack_env_vars, check=False, timeout=300)
    report = json.loads(result.stdout)
    assert report["events"] > 50, report  # the session's alarms, not an empty topic
    assert report["problems"] == {} and report["ok"], json.dumps(report["problems"])[:3000]
    assert result.returncode == 0
