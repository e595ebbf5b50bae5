"""On real Apache Kafka: a 3-node KRaft cluster from Maven's jars (``bedside stack`` with
``BEDSIDE_STACK__BROKER=kafka``), a worker on Faust's ``kafka`` profile, a node stopped under
load.

The worker is started with the cluster's three addresses and Bedside's topics replicated 3
times with ``min.insync.replicas`` 2 (what the stack creates): with one node gone every
partition still has a leader and two in-sync copies, so nothing is lost and alarms go on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import produce, read_topic
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings

NODES = 3


def free_block(offsets: tuple[int, ...]) -> int:
    """A base port whose ``base + offset`` ports are all free (a node's client and
    controller ports)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + max(offsets) >= 65000:
            continue
        taken = False
        for offset in offsets:
            with socket.socket() as probe:
                taken = taken or probe.connect_ex(("127.0.0.1", base + offset)) == 0
        if not taken:
            return base
    msg = "no block of free ports"
    raise RuntimeError(msg)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_env: Callable[[Path, int, int], dict[str, str]],
    run_bedside: Callable[..., Any],
) -> Iterator[dict[str, str]]:
    base = free_block((0, 1, 2, 100, 101, 102))
    tsdb = free_block((0,))
    env = make_stack_env(tmp_path_factory.mktemp("kafka-stack"), base, tsdb)
    env.update(
        BEDSIDE_STACK__BROKER="kafka",
        BEDSIDE_STACK__KAFKA_NODES=str(NODES),
        BEDSIDE_STACK__READY_TIMEOUT_S="120",
        BEDSIDE_KAFKA__BOOTSTRAP=",".join(f"127.0.0.1:{base + i}" for i in range(NODES)),
    )
    run_bedside("stack", "up", env=env, timeout=600)
    try:
        yield env
    finally:
        run_bedside("stack", "down", env=env, check=False, timeout=120)


def status(run_bedside: Callable[..., Any], env: dict[str, str]) -> list[dict[str, Any]]:
    done = run_bedside("stack", "status", "--json", env=env, check=False)
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def glucose_points(tsdb: str, patient: str, expected: int, timeout: float = 60) -> list[float]:
    """The patient's glucose values in the cluster's own time-series server, once there are
    ``expected`` of them (or the timeout)."""
    query = urllib.parse.urlencode({"match[]": f'glucose_value{{patient_id="{patient}"}}'})
    deadline, values = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        urllib.request.urlopen(f"{tsdb}/internal/force_flush", timeout=10).read()
        with urllib.request.urlopen(f"{tsdb}/api/v1/export?{query}", timeout=10) as answer:
            lines = [json.loads(line) for line in answer.read().splitlines() if line.strip()]
        values = sorted(v for series in lines for v in series["values"])
        if len(values) >= expected:
            break
        time.sleep(0.5)
    return values


def urgent_low(patient: str) -> list[dict[str, Any]]:
    return [cgm(patient, 10, 41), cgm(patient, 5, 38)]


def alarmed(settings: Settings, patients: set[str], timeout: float) -> set[str]:
    found = asyncio.run(
        read_topic(
            settings,
            settings.topics.alerts,
            patients,
            lambda f: all(any(e["kind"] == "urgent_low" for e in f[p]) for p in patients),
            timeout=timeout,
        )
    )
    return {p for p in patients if any(e["kind"] == "urgent_low" for e in found[p])}


def test_a_three_node_cluster_loses_a_node_and_alarms_go_on(
    cluster: dict[str, str],
    run_bedside: Callable[..., Any],
    spawn_worker: Callable[..., Any],
    make_settings: Callable[[dict[str, str]], Settings],
) -> None:
    nodes = status(run_bedside, cluster)
    assert [n["name"] for n in nodes] == ["kafka-1", "kafka-2", "kafka-3", "tsdb"]
    assert all(n["healthy"] and n["pid"] for n in nodes), nodes
    settings = make_settings(cluster)
    own = {k: v for k, v in cluster.items() if k.startswith("BEDSIDE_")}
    worker = spawn_worker(
        **own,
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_TOPICS__REPLICATION_FACTOR=str(NODES),  # the worker's own topics too
    )
    worker.wait_ready(timeout=120)
    assert "kafka broker profile" in worker.log.read_text()  # found by its cluster id
    run = uuid.uuid4().hex[:6]
    first = {f"k1-{run}-{i}" for i in range(5)}
    asyncio.run(produce(settings, [r for p in sorted(first) for r in urgent_low(p)]))
    assert alarmed(settings, first, timeout=60) == first

    # a node fails (killed: no clean shutdown) while the stream runs
    victim = next(n for n in nodes if n["name"] == "kafka-2")
    os.kill(victim["pid"], signal.SIGKILL)
    started = time.monotonic()
    after = {f"k2-{run}-{i}" for i in range(20)}
    asyncio.run(produce(settings, [r for p in sorted(after) for r in urgent_low(p)]))
    assert alarmed(settings, after, timeout=120) == after  # every patient alarmed
    gap = time.monotonic() - started
    down = next(n for n in status(run_bedside, cluster) if n["name"] == "kafka-2")
    assert not down["healthy"]
    # no record lost: every reading of every patient is in the time series
    for patient in sorted(first | after):
        assert glucose_points(settings.influx.url, patient, 2) == [38, 41], patient
    worker.assert_alive()
    print(f"alarms of 20 patients after a node was killed: all within {gap:.1f} s")  # noqa: T201

    # the node comes back and rejoins
    run_bedside("stack", "up", env=cluster, timeout=300)
    assert all(n["healthy"] for n in status(run_bedside, cluster))
    again = {f"k3-{run}-{i}" for i in range(5)}
    asyncio.run(produce(settings, [r for p in sorted(again) for r in urgent_low(p)]))
    assert alarmed(settings, again, timeout=60) == again
