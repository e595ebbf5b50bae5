"""``bedside stack``: idempotent up, exact down, clear errors, honest status."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy import kafka
from deploy.stack import Health, LocalStack, _broker_binary, ensure_fresh_topics, port_in_use
from streams.engine.broker import TopicMismatchError
from streams.settings import Settings, get_settings

Run = Callable[..., subprocess.CompletedProcess[str]]
MakeEnv = Callable[[Path, int, int], dict[str, str]]


def test_status_reports_broker_and_database_healthy(
    stack_env_vars: dict[str, str], run_bedside: Run
) -> None:
    result = run_bedside("stack", "status", env=stack_env_vars)
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["broker", "tsdb"]
    assert all(line.split()[2] == "healthy" for line in lines), result.stdout
    assert stack_env_vars["BEDSIDE_KAFKA__BOOTSTRAP"] in lines[0]
    assert stack_env_vars["BEDSIDE_INFLUX__URL"] in lines[1]


def test_up_twice_is_harmless(
    stack_env_vars: dict[str, str], local_stack: LocalStack, run_bedside: Run
) -> None:
    pids = [s.pid for s in local_stack.status()]
    result = run_bedside("stack", "up", env=stack_env_vars)
    assert "already running" in result.stdout
    assert "0 created, 8 present" in result.stdout
    assert [s.pid for s in local_stack.status()] == pids


def test_taken_port_is_named_and_nothing_is_left_running(
    tmp_path: Path, port: Callable[[], int], run_bedside: Run, make_stack_env: MakeEnv
) -> None:
    broker_port, tsdb_port = port(), port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", tsdb_port))
        squatter.listen()
        env = make_stack_env(tmp_path / "stack", broker_port, tsdb_port)
        result = run_bedside("stack", "up", env=env, check=False)
        assert result.returncode == 1
        assert f"port {tsdb_port}" in result.stderr
        assert "BEDSIDE_STACK__TSDB_PORT" in result.stderr
        # the broker it had started before finding the port taken is stopped again
        assert not port_in_use(broker_port)
        status = run_bedside("stack", "status", env=env, check=False)
        assert status.returncode == 1
        assert "foreign" in status.stdout


def test_down_stops_exactly_the_processes_it_started(
    tmp_path: Path,
    port: Callable[[], int],
    run_bedside: Run,
    make_stack_env: MakeEnv,
    make_settings: Callable[[dict[str, str]], Settings],
) -> None:
    env = make_stack_env(tmp_path / "stack", port(), port())
    stack = LocalStack(make_settings(env))
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        run_bedside("stack", "up", env=env)
        pids = {s.name: s.pid for s in stack.status()}
        assert all(pids.values())
        run_bedside("stack", "down", env=env)
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid
        assert [s.health for s in stack.status()] == [Health.STOPPED, Health.STOPPED]
        # a record whose pid now belongs to someone else (pid reuse) is not obeyed
        record = stack.run_dir / "broker.json"
        record.write_text(json.dumps({"pid": bystander.pid, "start_ticks": 1, "argv": []}))
        result = run_bedside("stack", "down", env=env)
        assert "broker: was not running" in result.stdout
        assert bystander.poll() is None
        assert not record.exists()
    finally:
        bystander.kill()
        bystander.wait()
        run_bedside("stack", "down", env=env, check=False)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kafka_storage_formats_with_a_cluster_id_starting_with_a_dash(
    tmp_path: Path, port: Callable[[], int]
) -> None:
    """One id in 64 that base64 makes starts with "-": Kafka's storage tool must still take
    it (a kept ``cluster-id`` file may hold one) and the node's metadata must name it."""
    lib = kafka.jars(tmp_path)
    node = kafka.nodes(port(), 1, tmp_path / "data")[0]
    text = kafka.properties(node, [node], partitions=2)
    odd = "-" + kafka.new_cluster_id()[1:]
    kafka.prepare(node, tmp_path / "config", text, lib, odd)
    meta = (node.log_dir / "meta.properties").read_text()
    assert f"cluster.id={odd}" in meta


def test_a_fresh_embedded_broker_gets_topics_a_client_created_first_recreated(
    port: Callable[[], int],
) -> None:
    """A memory-only broker that has just (re)started: a client still running from before
    asks for a topic and the broker creates it with its default partitions (Tansu: 4) before
    ``stack up`` creates Bedside's: that topic is deleted and created as configured. On a
    broker that holds data the same mismatch stays an error."""
    listener = f"tcp://127.0.0.1:{port()}"
    broker = subprocess.Popen(
        [_broker_binary(), "broker", "--listener-url", listener, "--advertised-listener-url",
         listener],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    settings = get_settings(kafka={"bootstrap": listener.removeprefix("tcp://")})
    topics = settings.topics

    async def partitions() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        try:
            return len((await admin.describe_topics([topics.vitals]))[0]["partitions"])
        finally:
            await admin.close()

    async def scenario() -> None:
        for _ in range(50):  # the broker listens within a second or two
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
            try:
                await producer.start()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                await producer.stop()
                await asyncio.sleep(0.2)
        try:
            await producer.send_and_wait(topics.vitals, b"{}")  # auto-created: 4 partitions
        finally:
            await producer.stop()
        assert await partitions() != topics.partitions
        with pytest.raises(TopicMismatchError):
            await ensure_fresh_topics(settings.kafka, topics, fresh=False)
        await ensure_fresh_topics(settings.kafka, topics, fresh=True)
        assert await partitions() == topics.partitions

    try:
        asyncio.run(scenario())
    finally:
        broker.kill()
        broker.wait()
