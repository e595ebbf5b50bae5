"""The worker's own broker clients start without a broker (the worker must not die), say so."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.engine.alert_view import AlertView
from streams.engine.producer import RecordSink
from streams.monitoring import Monitor
from streams.settings import get_settings


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_no_broker_at_start_is_a_problem_not_a_crash() -> None:
    settings = get_settings(kafka={"bootstrap": f"127.0.0.1:{closed_port()}"})
    sink = RecordSink(settings.kafka)
    sink.RETRY_S = 0.05
    monitor = Monitor(clients=[sink])
    await sink.start()  # does not raise
    try:
        assert not sink.connected
        assert monitor.problems(30) == ["1 of 1 broker clients not connected yet"]
        with pytest.raises(KafkaConnectionError):
            await sink.send("bedside.alerts", b"p", b"{}")
        await asyncio.sleep(0.2)  # the retry loop keeps trying without raising
        assert not sink.connected
    finally:
        await sink.stop()


async def test_the_alert_view_waits_for_a_broker_away_at_start() -> None:
    settings = get_settings(kafka={"bootstrap": f"127.0.0.1:{closed_port()}"})
    view = AlertView(settings.kafka, settings.topics.alerts)
    monitor = Monitor(clients=[view])
    await view.start()  # does not raise
    await asyncio.sleep(0.3)
    assert not view.connected
    assert monitor.problems(30) == ["1 of 1 broker clients not connected yet"]
    await asyncio.wait_for(view.stop(), 10)  # and a stop while it waits is prompt
