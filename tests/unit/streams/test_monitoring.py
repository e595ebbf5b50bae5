"""Monitoring says when it is down: problems in words, one degraded event and its resolution."""

from __future__ import annotations

from dataclasses import dataclass

from streams.monitoring import Monitor


@dataclass
class Sink:
    blocked_since: float | None = None
    blocked_reason: str | None = None
    write_failures: int = 0


def test_a_healthy_worker_has_no_problems() -> None:
    monitor = Monitor(sink=Sink())
    assert monitor.problems(30, now=monitor.last_stored + 100) == []  # idle is fine


def test_each_fault_is_named() -> None:
    sink = Sink(blocked_since=100.0)
    monitor = Monitor(sink=sink, broker_down_since=90.0, lag=12, last_stored=50.0)
    problems = monitor.problems(30, now=110.0)
    assert any("broker unreachable for 20 s" in p for p in problems)
    assert any("database refuses writes for 10 s" in p for p in problems)
    assert any("no progress for 60 s with 12 records waiting" in p for p in problems)


def test_degraded_opens_once_after_the_delay_and_resolves() -> None:
    monitor = Monitor()
    assert monitor.transition(["db down"], 30, "w", 1000.0) is None
    assert monitor.transition(["db down"], 30, "w", 1020.0) is None
    opened = monitor.transition(["db down"], 30, "w", 1031.0)
    assert opened is not None and opened["kind"] == "monitoring_degraded"
    assert opened["state"] == "open" and "db down" in opened["reason"]
    assert monitor.transition(["db down"], 30, "w", 1040.0) is None  # once
    resolved = monitor.transition([], 30, "w", 1050.0)
    assert resolved is not None and resolved["state"] == "resolved"
    assert resolved["alert_id"] == opened["alert_id"]
    assert monitor.transition([], 30, "w", 1060.0) is None


def test_a_short_blip_opens_nothing() -> None:
    monitor = Monitor()
    assert monitor.transition(["db down"], 30, "w", 1000.0) is None
    assert monitor.transition([], 30, "w", 1010.0) is None
    assert monitor.degraded_since is None
