"""Apache Kafka for the local stack: KRaft nodes (combined controller and broker) from the
project's own jars, resolved by Maven from Maven Central (``deploy/kafka/pom.xml`` pins the
version, the one place it is named).

``BEDSIDE_STACK__BROKER=kafka bedside stack up`` fetches the jars once into
``<stack dir>/kafka/<version>/lib``, formats each node's storage once with the stack's
cluster id and starts ``BEDSIDE_STACK__KAFKA_NODES`` nodes on loopback: node *i* (from 1)
listens for clients on ``broker_port + i - 1`` and for its controller quorum on
``broker_port + 100 + i - 1``, keeps its log under ``data/kafka-<i>`` and runs with a heap of
``BEDSIDE_STACK__KAFKA_HEAP_MB``. Topics default to a replication factor of min(3, nodes)
and ``min.insync.replicas`` of min(2, nodes), so a 3-node cluster keeps taking writes with
one node down.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

HOST = "127.0.0.1"
CONTROLLER_OFFSET = 100  # a node's controller port: its client port + this
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaSetupError(RuntimeError):
    """The Kafka jars or a node's storage could not be prepared; the message says why."""


def pinned_version() -> str:
    """The Kafka version ``deploy/kafka/pom.xml`` pins."""
    pom = (resources.files("deploy") / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if found is None:
        msg = "deploy/kafka/pom.xml names no <kafka.version>"
        raise KafkaSetupError(msg)
    return found.group(1).strip()


def jars(root: Path) -> Path:
    """The folder of the pinned Kafka's jars under the stack directory, fetched by Maven
    (from Maven Central, nothing else) when missing."""
    version = pinned_version()
    lib = root / "kafka" / version / "lib"
    if lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) is needed to fetch Apache Kafka's jars: apt-get install -y maven"
        raise KafkaSetupError(msg)
    lib.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("deploy") / "kafka" / "pom.xml") as pom:
        done = subprocess.run(  # noqa: S603 - our pom, Maven Central
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        shutil.rmtree(lib, ignore_errors=True)
        msg = (
            f"Maven could not fetch Apache Kafka {version}:\n{(done.stdout + done.stderr)[-2000:]}"
        )
        raise KafkaSetupError(msg)
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with "-" (as Kafka's own ``Uuid.randomUuid``: a leading dash reads as an option)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


@dataclass(frozen=True)
class KafkaNode:
    """One combined controller and broker node of the local cluster."""

    node_id: int  # from 1
    port: int
    controller_port: int
    log_dir: Path

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


def nodes(broker_port: int, count: int, data_dir: Path) -> list[KafkaNode]:
    return [
        KafkaNode(
            i,
            broker_port + i - 1,
            broker_port + CONTROLLER_OFFSET + i - 1,
            data_dir / f"kafka-{i}",
        )
        for i in range(1, count + 1)
    ]


def properties(node: KafkaNode, cluster: list[KafkaNode], partitions: int) -> str:
    """The node's server.properties."""
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in cluster)
    replicas = min(3, len(cluster))
    in_sync = min(2, len(cluster))
    lines = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.log_dir,
        "num.partitions": partitions,
        "default.replication.factor": replicas,
        "min.insync.replicas": in_sync,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "log.retention.hours": 24,
        "log.segment.bytes": 64 * 1024 * 1024,
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def prepare(
    node: KafkaNode,
    config_dir: Path,
    text: str,
    lib: Path,
    cluster_id: str,
    format_args: tuple[str, ...] = (),
) -> Path:
    """Write the node's properties and format its storage once (with ``cluster_id``)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / f"{node.name}.properties"
    config.write_text(text)
    if (node.log_dir / "meta.properties").exists():
        return config
    node.log_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - our jars and config
        [
            *java(lib, heap_mb=256),
            STORAGE_TOOL,
            "format",
            "--ignore-formatted",
            f"--cluster-id={cluster_id}",  # "=": an id made elsewhere may start with "-"
            "--config",
            str(config),
            *format_args,  # e.g. --add-scram 'SCRAM-SHA-512=[name=...,password=...]'
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"formatting {node.name}'s storage failed:\n{(done.stdout + done.stderr)[-2000:]}"
        raise KafkaSetupError(msg)
    return config


def java(lib: Path, heap_mb: int) -> list[str]:
    """The JVM command line before the main class."""
    return [
        shutil.which("java") or "java",
        f"-Xms{heap_mb // 2}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-cp",
        f"{lib}/*",
    ]


def argv(lib: Path, config: Path, heap_mb: int) -> list[str]:
    """The command that runs a node."""
    return [*java(lib, heap_mb), MAIN_CLASS, str(config)]
