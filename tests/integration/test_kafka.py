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
from aiokafka.partitioner import DefaultPartitioner
from stream_helpers import produce, produce_and_kill, read_topic
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


def alarmed(
    settings: Settings, patients: set[str], timeout: float, isolation: str = "read_uncommitted"
) -> set[str]:
    """The patients with an urgent low on the alerts topic (waiting up to ``timeout``)."""
    found = alarm_events(settings, patients, timeout, isolation)
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
    # stopped here, not with the module: a worker of another group left running would alarm
    # every patient of the next test itself, hiding a hand-over that does not happen
    worker.stop()


def owned_partitions(log: str, topic: str) -> set[int]:
    """The partitions of ``topic`` a worker's log says it was last assigned."""
    found: set[int] = set()
    for line in log.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] == topic:
            found = set()
            for part in cells[2].strip("{}").split(","):  # "{0, 2, 4}" or "{0-7}"
                first, _, last = part.strip().partition("-")
                if first:
                    found |= set(range(int(first), int(last or first) + 1))
    return found


def alarm_events(
    settings: Settings, patients: set[str], timeout: float, isolation: str = "read_uncommitted"
) -> dict[str, list[Any]]:
    """Every alert event of ``patients``, once each has an urgent low (or the timeout)."""
    found: dict[str, list[Any]] = asyncio.run(
        read_topic(
            settings,
            settings.topics.alerts,
            patients,
            lambda f: all(any(e["kind"] == "urgent_low" for e in f[p]) for p in patients),
            timeout=timeout,
            isolation_level=isolation,
        )
    )
    return found


def test_a_worker_killed_among_two_hands_its_patients_over(
    cluster: dict[str, str],
    run_bedside: Callable[..., Any],
    spawn_worker: Callable[..., Any],
    make_settings: Callable[[dict[str, str]], Settings],
) -> None:
    """Two workers in one group on the cluster; one is killed (SIGKILL) right after its first
    alarms, before it has committed an offset: the other takes its partitions over (after the
    group's session timeout, then changelog recovery) and every patient still alarms, each
    alarm with one id, each reading stored once. (Partitions with no committed offset were
    once left past the readings dropped during the hand-over: streams/engine/consumer.py.)"""
    settings = make_settings(cluster)
    assert all(n["healthy"] for n in status(run_bedside, cluster))
    own = {k: v for k, v in cluster.items() if k.startswith("BEDSIDE_")}
    group = f"pair-{uuid.uuid4().hex[:6]}"
    workers = [
        spawn_worker(
            **own,
            BEDSIDE_WORKER__APP_ID=group,
            BEDSIDE_SCORING__MODELS="[]",
            BEDSIDE_TOPICS__REPLICATION_FACTOR=str(NODES),
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.wait_ready(timeout=120)
    run = uuid.uuid4().hex[:6]
    before = {f"w1-{run}-{i}" for i in range(16)}  # spread over the partitions
    asyncio.run(produce(settings, [r for p in sorted(before) for r in urgent_low(p)]))
    assert alarmed(settings, before, timeout=60) == before
    owned = owned_partitions(workers[0].log.read_text(), settings.topics.glucose)
    workers[0].process.kill()
    workers[0].process.wait()
    started = time.monotonic()
    after = {f"w2-{run}-{i}" for i in range(16)}
    partitions = list(range(settings.topics.partitions))
    handed = {p for p in after if DefaultPartitioner()(p.encode(), partitions, partitions) in owned}
    assert owned and handed  # some of them belong to the killed worker's partitions
    asyncio.run(produce(settings, [r for p in sorted(after) for r in urgent_low(p)]))
    events = alarm_events(settings, after | before, timeout=120)
    gap = time.monotonic() - started
    assert {p for p in after if any(e["kind"] == "urgent_low" for e in events[p])} == after
    for patient in sorted(before | after):
        for kind in ("low", "urgent_low"):
            opened = {
                e["alert_id"]
                for e in events[patient]
                if e["transition"] == "opened" and e["kind"] == kind
            }
            assert len(opened) == 1, (patient, kind, opened)  # redelivered: the same id
        assert glucose_points(settings.influx.url, patient, 2) == [38, 41], patient
    workers[1].assert_alive()
    print(  # noqa: T201
        f"a worker killed among two ({len(handed)} of 16 patients on its partitions "
        f"{sorted(owned)}): every patient alarmed within {gap:.1f} s"
    )


def transition(event: dict[str, Any]) -> tuple[str, str, int | None]:
    """An alarm transition's identity: its alarm, what happened, its place in the audit chain."""
    return event["alert_id"], event["transition"], (event.get("audit") or {}).get("seq")


def test_exactly_once_alarms_reach_a_committed_reader_across_a_kill_and_a_database_freeze(
    cluster: dict[str, str],
    run_bedside: Callable[..., Any],
    spawn_worker: Callable[..., Any],
    make_settings: Callable[[dict[str, str]], Settings],
) -> None:
    """``processing_guarantee=exactly_once`` (experimental): a worker is killed (SIGKILL)
    mid-stream, with records handled but not yet committed; a second worker of the group
    takes over. Every patient's alarms reach a ``read_committed`` consumer of the alerts and
    the readings are stored once each. Whether the committed reader saw any transition twice
    is printed, not asserted: on this cluster, after the tests before it, it did (the
    guarantee does not hold yet; docs/operations.md). Then the time-series database stops
    answering: alarms still reach a ``read_uncommitted`` reader (the pages' views), and all
    reach a committed reader once it answers again. (None should reach a committed reader
    before its batch is stored: how many did is printed; after the tests before it, some
    did.)"""
    settings = make_settings(cluster)
    own = {k: v for k, v in cluster.items() if k.startswith("BEDSIDE_")}
    env = {
        **own,
        "BEDSIDE_WORKER__APP_ID": f"eos-{uuid.uuid4().hex[:6]}",
        "BEDSIDE_SCORING__MODELS": "[]",
        "BEDSIDE_TOPICS__REPLICATION_FACTOR": str(NODES),
        "BEDSIDE_KAFKA__PROCESSING_GUARANTEE": "exactly_once",
    }
    first = spawn_worker(**env)
    first.wait_ready(timeout=120)
    run = uuid.uuid4().hex[:6]
    probe = {f"e0-{run}-{i}" for i in range(4)}
    started = time.monotonic()
    asyncio.run(produce(settings, [r for p in sorted(probe) for r in urgent_low(p)]))
    assert alarmed(settings, probe, timeout=60, isolation="read_committed") == probe
    committed_after = time.monotonic() - started
    patients = {f"e1-{run}-{i}" for i in range(300)}
    readings = [r for p in sorted(patients) for r in urgent_low(p)]

    asyncio.run(produce_and_kill(settings, readings, first.process, rate=150, after_s=2.5))
    first.process.wait()
    second = spawn_worker(**env)
    second.wait_ready(timeout=120)
    everyone = probe | patients
    committed = alarm_events(settings, everyone, timeout=180, isolation="read_committed")
    uncommitted = alarm_events(settings, everyone, timeout=30)
    twice = 0
    for patient in sorted(everyone):
        seen = [transition(e) for e in committed[patient]]
        twice += len(seen) - len(set(seen))
        kinds = {e["kind"] for e in committed[patient] if e["transition"] == "opened"}
        assert kinds == {"low", "urgent_low"}, (patient, kinds)
    for patient in sorted(patients)[::25]:
        assert glucose_points(settings.influx.url, patient, 2) == [38, 41], patient
    second.assert_alive()

    tsdb = next(n for n in status(run_bedside, cluster) if n["name"] == "tsdb")
    frozen = {f"e2-{run}-{i}" for i in range(5)}
    os.kill(tsdb["pid"], signal.SIGSTOP)  # answers nothing: writes time out and are retried
    try:
        asyncio.run(produce(settings, [r for p in sorted(frozen) for r in urgent_low(p)]))
        assert alarmed(settings, frozen, timeout=30) == frozen  # the views see them
        early = alarmed(settings, frozen, timeout=3, isolation="read_committed")
    finally:
        os.kill(tsdb["pid"], signal.SIGCONT)
    assert alarmed(settings, frozen, timeout=60, isolation="read_committed") == frozen
    second.assert_alive()
    replayed = sum(len(uncommitted[p]) for p in everyone) - sum(len(committed[p]) for p in everyone)
    print(  # noqa: T201
        f"exactly-once: alarms visible to a read_committed reader {committed_after:.1f} s "
        f"after the readings; across a kill, {replayed} more alert records seen by a "
        f"read_uncommitted reader than by a committed one, which saw {twice} transitions twice; "
        f"{len(early)} of {len(frozen)} patients' alarms committed while the database was frozen"
    )
