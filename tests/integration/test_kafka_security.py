"""Apache Kafka with security on the wire, as docs/production.md sets it up: a SASL_SSL
listener (TLS with certificates made here, SCRAM-SHA-512 users) and ACLs enforced by KRaft's
StandardAuthorizer.

Principals: ``admin`` (the brokers themselves, a super user), ``bedside`` (the workers: their
topics, their consumer group, their changelogs), ``device`` (may write the ingest topics and
nothing else), ``reader`` (a downstream system: reads the alert and risk topics). The worker,
its gateway and the ``bedside`` CLI connect with the documented settings; a device cannot
forge a care-team action, a wrong password and an untrusted certificate each fail with a
message that says which.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from care_team import SIGNING_KEY
from certs import authority, loopback_server, pem, pem_key
from stream_helpers import recent_cgm as cgm

from deploy import kafka
from streams.engine.broker import client_options
from streams.settings import KafkaSettings

PASSWORDS = {name: f"{name}-secret-{uuid.uuid4().hex[:12]}" for name in
             ("admin", "bedside", "device", "reader")}  # fmt: skip
APP_ID = "secure-bedside"
BEDSIDE = shutil.which("bedside", path=str(Path(sys.executable).parent)) or "bedside"
INGEST = ("bedside.glucose", "bedside.vitals", "bedside.labs")
# aiokafka can drop a socket unclosed when a handshake fails while this test's own clients
# (not the worker's, not the CLI's: those run in their own processes) probe the broker
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def broker_certificate(folder: Path) -> tuple[Path, Path]:
    """A CA and, signed by it, the broker's certificate for 127.0.0.1: (ca.pem, broker.pem
    with the broker's key and certificate, as Kafka's PEM keystore takes them)."""
    ca = authority("bedside test CA")
    cert, key = loopback_server("kafka-1", ca)
    ca_file, keystore = folder / "ca.pem", folder / "broker.pem"
    ca_file.write_bytes(pem(ca[0]))
    keystore.write_bytes(pem_key(key) + pem(cert))
    return ca_file, keystore


def secure_properties(node: kafka.KafkaNode, ca: Path, keystore: Path) -> str:
    """The node's properties: docs/production.md's secure listener on one node."""
    base = kafka.properties(node, [node], partitions=4)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    secure = {
        "listeners": f"SASL_SSL://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            f'{scram} username="admin" password="{PASSWORDS["admin"]}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": ca,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # the controller listener is loopback-only PLAINTEXT here: its ANONYMOUS principal is
        # the node talking to itself (production: an SSL controller listener, docs)
        "super.users": "User:admin;User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "auto.create.topics.enable": "false",
    }  # fmt: skip
    kept = [line for line in base.splitlines() if line.split("=", 1)[0] not in secure]
    return "\n".join([*kept, *(f"{k}={v}" for k, v in secure.items())]) + "\n"


ACLS = [  # (principal, operations, resource flags): what each may do, and nothing more
    ("bedside", ["All"], ["--resource-pattern-type", "prefixed", "--topic", "bedside."]),
    ("bedside", ["All"], ["--resource-pattern-type", "prefixed", "--topic", APP_ID]),
    ("bedside", ["All"], ["--resource-pattern-type", "prefixed", "--group", APP_ID]),
    *(("device", ["Write", "Describe"], ["--topic", topic]) for topic in INGEST),
    *(("reader", ["Read", "Describe"], ["--topic", t]) for t in ("bedside.alerts", "bedside.risk")),
    ("reader", ["Read"], ["--resource-pattern-type", "prefixed", "--group", "reader"]),
]


class SecureKafka:
    def __init__(self, folder: Path, port: int, lib: Path) -> None:
        self.folder, self.lib = folder, lib
        self.ca, keystore = broker_certificate(folder)
        self.node = kafka.nodes(port, 1, folder / "data")[0]
        scram = [
            arg
            for name, password in PASSWORDS.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]
        text = secure_properties(self.node, self.ca, keystore)
        config = kafka.prepare(
            self.node, folder / "config", text, lib, kafka.new_cluster_id(), tuple(scram)
        )
        with (folder / "kafka.log").open("ab") as log:
            self.process = subprocess.Popen(
                kafka.argv(lib, config, 384), stdout=log, stderr=subprocess.STDOUT
            )
        self.bootstrap = self.node.address

    def settings(
        self, user: str, password: str | None = None, ca: Path | None = None
    ) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.bootstrap,
            profile="kafka",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=password or PASSWORDS[user],
            ssl_cafile=ca or self.ca,
        )

    def env(self, user: str, password: str | None = None, ca: Path | None = None) -> dict[str, str]:
        """The documented settings, as environment variables."""
        return {
            "BEDSIDE_KAFKA__BOOTSTRAP": self.bootstrap,
            "BEDSIDE_KAFKA__PROFILE": "kafka",
            "BEDSIDE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "BEDSIDE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "BEDSIDE_KAFKA__SASL_USERNAME": user,
            "BEDSIDE_KAFKA__SASL_PASSWORD": password or PASSWORDS[user],
            "BEDSIDE_KAFKA__SSL_CAFILE": str(ca or self.ca),
        }

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "kafka.log").read_text()[-3000:]
            if asyncio.run(reachable(self.settings("admin"))):
                return
            time.sleep(1)
        raise AssertionError((self.folder / "kafka.log").read_text()[-3000:])

    def acl(self, principal: str, operations: list[str], resource: list[str]) -> None:
        admin = self.folder / "admin.properties"
        admin.write_text(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{PASSWORDS["admin"]}";\n'
            f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca}\n"
        )
        command = [
            *kafka.java(self.lib, 256), "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server", self.bootstrap, "--command-config", str(admin), "--add",
            "--allow-principal", f"User:{principal}",
            *(arg for op in operations for arg in ("--operation", op)), *resource,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def reachable(settings: KafkaSettings) -> bool:
    producer = AIOKafkaProducer(request_timeout_ms=3000, **client_options(settings))
    try:
        await producer.start()  # no wait_for: a cancelled handshake would leak its socket
        return True
    except (KafkaError, TimeoutError, OSError):
        return False
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cluster = SecureKafka(folder, port, kafka.jars(folder))
    try:
        cluster.wait_ready()
        for principal, operations, resource in ACLS:
            cluster.acl(principal, operations, resource)
        # the operator creates the topics once, with a principal allowed to (here: admin)
        created = run_bedside("topics", env=cluster.env("admin"))
        assert created.returncode == 0 and created.stdout.startswith("8 created"), created
        yield cluster
    finally:
        cluster.stop()


def run_bedside(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The ``bedside`` CLI with the documented settings (and nothing of the session's stack)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    return subprocess.run(
        [BEDSIDE, *args], env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )


async def send(settings: KafkaSettings, topic: str, key: str, value: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=10000, **client_options(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


async def alarms_of(
    settings: KafkaSettings, patient: str, timeout: float = 90
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        "bedside.alerts", group_id=f"reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", **client_options(settings),
    )  # fmt: skip
    found: list[dict[str, Any]] = []
    try:
        await consumer.start()  # refused here for a principal without Read: stop it all the same
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [
                    e for r in records if (e := orjson.loads(r.value))["patient_id"] == patient
                ]
    finally:
        await consumer.stop()
    return found


@pytest.fixture(scope="module")
def secure_worker(secure: SecureKafka, spawn_worker: Callable[..., Any]) -> Any:
    """A worker connected as the ``bedside`` principal, with the documented settings."""
    worker = spawn_worker(BEDSIDE_WORKER__APP_ID=APP_ID, BEDSIDE_SCORING__MODELS="[]",
                          **secure.env("bedside"))  # fmt: skip
    worker.wait_ready(timeout=120)
    return worker


def test_a_worker_on_sasl_ssl_alarms_devices_write_ingest_and_a_reader_reads_alerts(
    secure: SecureKafka, secure_worker: Any
) -> None:
    patient = f"sec-{uuid.uuid4().hex[:6]}"
    for minutes, value in ((10, 70), (5, 52), (0, 49)):
        asyncio.run(send(secure.settings("device"), "bedside.glucose", patient,
                         cgm(patient, minutes, value)))  # fmt: skip
    alarms = asyncio.run(alarms_of(secure.settings("reader"), patient))
    assert alarms and alarms[0]["kind"] == "urgent_low", alarms
    # the gateway publishes with the worker's principal
    other = f"sec-gw-{uuid.uuid4().hex[:6]}"
    body = json.dumps([cgm(other, m, v) for m, v in ((10, 70), (5, 52), (0, 49))]).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(f"{secure_worker.url}/v1/observations", body, headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    assert asyncio.run(alarms_of(secure.settings("reader"), other))


def test_a_device_may_write_ingest_topics_only(secure: SecureKafka) -> None:
    device = secure.settings("device")
    forged = {"alert_id": "a", "patient_id": "p", "action": "snooze", "by": "Dr. Forged"}
    for topic in ("bedside.alert-acks", "bedside.alerts", "bedside.risk", "bedside.deadletter"):
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(send(device, topic, "p", forged))
    with pytest.raises(TopicAuthorizationFailedError):  # nor read what others wrote
        asyncio.run(alarms_of(device, "p", timeout=5))
    # the reader reads the alerts but cannot write a care-team action either
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(send(secure.settings("reader"), "bedside.alert-acks", "p", forged))


def test_the_cli_publishes_as_a_device_and_reads_as_a_reader(
    secure: SecureKafka, secure_worker: Any
) -> None:
    published = run_bedside(
        "simulate", "--patients", "1", "--duration", "0.5", "--speed", "0", "--faults", "none",
        "--truth", str(secure.folder / "truth.jsonl"), env=secure.env("device"),
    )  # fmt: skip
    assert published.returncode == 0 and "sent " in published.stdout, published.stderr[-2000:]
    # a low reading alarms; the reader verifies the audit chain of the alarms on bedside.alerts
    patient = f"sec-cli-{uuid.uuid4().hex[:6]}"
    for minutes, value in ((5, 52), (0, 49)):
        asyncio.run(send(secure.settings("device"), "bedside.glucose", patient,
                         cgm(patient, minutes, value)))  # fmt: skip
    assert asyncio.run(alarms_of(secure.settings("reader"), patient))
    reader = {**secure.env("reader"), "BEDSIDE_SECURITY__SIGNING_KEY": SIGNING_KEY}
    verified = run_bedside("audit", "verify", env=reader, timeout=60)
    assert verified.returncode == 0, verified
    trail = json.loads(verified.stdout)
    assert trail["ok"] and trail["patients"] >= 1, trail  # the simulated patient's alarms
    # a device may read neither: refused and said so, never an empty "nothing there"
    for command in (("dead-letters",), ("audit", "verify")):
        device = {**secure.env("device"), "BEDSIDE_SECURITY__SIGNING_KEY": SIGNING_KEY}
        refused = run_bedside(*command, env=device, timeout=60)
        assert refused.returncode != 0 and "may not describe it" in refused.stderr, refused
        assert "Traceback" not in refused.stderr


def test_a_wrong_password_and_an_untrusted_certificate_are_named(secure: SecureKafka) -> None:
    worker = run_bedside("worker", env={**secure.env("bedside", password="not-the-password-1")})
    assert worker.returncode != 0
    assert "refused the SASL SCRAM-SHA-512 credentials of user 'bedside'" in worker.stderr
    assert "BEDSIDE_KAFKA__SASL_PASSWORD" in worker.stderr and "Traceback" not in worker.stderr
    other, _ = authority("a CA nobody trusts")
    untrusted = secure.folder / "untrusted-ca.pem"
    untrusted.write_bytes(pem(other))
    topics = run_bedside("topics", env=secure.env("admin", ca=untrusted))
    assert topics.returncode != 0 and "does not trust" in topics.stderr, topics.stderr[-2000:]
    assert "BEDSIDE_KAFKA__SSL_CAFILE" in topics.stderr and "Traceback" not in topics.stderr
