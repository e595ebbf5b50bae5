"""The time-series sink against each answer InfluxDB 2.7 gives, one test per answer.

The local stack's server accepts everything, so these run against ``influx_double`` (a
loopback HTTP double answering as InfluxDB 2.7 does: status, JSON body, headers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from influx_double import Forced, InfluxDouble
from pydantic import SecretStr

from streams.engine.series import InfluxSink
from streams.monitoring import Monitor
from streams.settings import InfluxSettings

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def line(value: float, at: int) -> str:
    return f"labs,patient_id=p1,code=4548-4 value={value!r} {at}"


@pytest.fixture
def double() -> Iterator[InfluxDouble]:
    server = InfluxDouble(retention_s=30 * 86_400).start()
    yield server
    server.stop()


def sink_for(double: InfluxDouble, **settings: object) -> InfluxSink:
    values = {"url": double.url, "token": SecretStr(double.token), "retention_days": 0}
    return InfluxSink(InfluxSettings(**{**values, **settings}), retry_initial_s=0.05)


async def written(sink: InfluxSink, lines: list[str]) -> list:  # type: ignore[type-arg]
    try:
        return await sink.write(lines)
    finally:
        await sink.on_stop()


def test_204_everything_stored(double: InfluxDouble) -> None:
    lines = [line(7.1, now_ms() - i) for i in range(3)]
    assert asyncio.run(written(sink_for(double), lines)) == []
    assert double.stored == lines and double.requests == [(204, 3)]


def test_422_partial_write_reports_the_refused_points_and_does_not_resend(
    double: InfluxDouble,
) -> None:
    old = line(6.5, now_ms() - 60 * DAY_MS)  # a back-dated lab: outside the 30-day bucket
    fresh = [line(7.1, now_ms() - i) for i in range(2)]
    sink = sink_for(double)
    [refused] = asyncio.run(written(sink, [fresh[0], old, fresh[1]]))
    assert double.stored == fresh and double.requests == [(422, 3)]  # sent once, never again
    assert refused.count == 1 and refused.status == 422 and refused.lines == (old,)
    assert "beyond retention" in refused.describe() and "not retried" in refused.describe()
    assert sink.points_refused == 1 and sink.points_written == 2 and sink.blocked_since is None


def test_points_older_than_the_retention_setting_are_not_sent(double: InfluxDouble) -> None:
    sink = sink_for(double, retention_days=30)
    fresh = line(7.0, now_ms())
    assert asyncio.run(written(sink, [line(6.0, now_ms() - 400 * DAY_MS), fresh])) == []
    assert double.stored == [fresh] and double.requests == [(204, 1)]
    assert sink.points_outside_retention == 1


def test_400_a_bad_line_is_found_by_splitting_and_the_rest_written(double: InfluxDouble) -> None:
    good = [line(7.0 + i, now_ms() - i) for i in range(6)]
    bad = "labs,patient_id=p1 value= 123"
    [refused] = asyncio.run(written(sink_for(double), [*good[:4], bad, *good[4:]]))
    assert sorted(double.stored) == sorted(good)
    assert refused.lines == (bad,) and refused.exact and refused.status == 400
    assert "unable to parse" in refused.message


def test_413_a_batch_too_large_is_split(double: InfluxDouble) -> None:
    lines = [line(7.0 + i, now_ms() - i) for i in range(8)]
    double.max_body = len("\n".join(lines[:3]).encode())
    assert asyncio.run(written(sink_for(double), lines)) == []
    assert sorted(double.stored) == sorted(lines)
    assert (413, 8) in double.requests


@pytest.mark.parametrize(
    ("status", "wrong", "hint"),
    [(401, {"token": SecretStr("stale-token")}, "BEDSIDE_INFLUX__TOKEN"),
     (404, {"bucket": "bedsid"}, "BEDSIDE_INFLUX__BUCKET")],
)  # fmt: skip
def test_401_and_404_are_a_loud_configuration_error_retried_until_fixed(
    double: InfluxDouble, status: int, wrong: dict[str, object], hint: str
) -> None:
    sink = sink_for(double, **wrong)
    monitor = Monitor(sink=sink)

    async def run() -> list:  # type: ignore[type-arg]
        task = asyncio.ensure_future(sink.write([line(7.0, now_ms())]))
        await asyncio.sleep(0.5)
        assert not task.done()  # held, not dropped
        [problem] = monitor.problems(stall_s=30)
        assert f"HTTP {status}" in problem and hint in problem, problem
        # the operator fixes the configuration: the held points are written
        double.token, double.bucket = sink.settings.token.get_secret_value(), sink.settings.bucket
        result = await asyncio.wait_for(task, 10)
        await sink.on_stop()
        return result

    assert asyncio.run(run()) == []
    assert len(double.stored) == 1 and sink.blocked_since is None and not monitor.problems(30)


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_wait_for_retry_after(double: InfluxDouble, status: int) -> None:
    double.answers.append(Forced(status, "too many requests", "slow down", {"Retry-After": "1"}))
    started = time.monotonic()
    assert asyncio.run(written(sink_for(double), [line(7.0, now_ms())])) == []
    waited = time.monotonic() - started
    assert waited >= 0.9, waited  # the server's second, not the sink's 50 ms backoff
    assert [s for s, _ in double.requests] == [status, 204]


def test_500_and_no_answer_are_retried(double: InfluxDouble) -> None:
    double.answers.append(Forced(500, "internal error", "boom"))
    assert asyncio.run(written(sink_for(double), [line(7.0, now_ms())])) == []
    assert [s for s, _ in double.requests] == [500, 204]
    port = double.port
    double.stop()  # nothing listens: connection refused until it is back

    async def run() -> list:  # type: ignore[type-arg]
        sink = sink_for(double)
        task = asyncio.ensure_future(sink.write([line(7.5, now_ms())]))
        await asyncio.sleep(0.5)
        assert not task.done() and sink.blocked_reason and "no answer" in sink.blocked_reason
        double.port = port
        await asyncio.get_running_loop().run_in_executor(None, double.start)
        result = await asyncio.wait_for(task, 10)
        await sink.on_stop()
        return result

    assert asyncio.run(run()) == []
    assert double.stored[-1].startswith("labs") and "7.5" in double.stored[-1]
