"""Connecting to the broker: security options, topic creation and the broker profile."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner

from ..settings import BrokerProfile, KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class BrokerUnavailableError(RuntimeError):
    """The configured broker could not be reached."""


class TopicMismatchError(RuntimeError):
    """A topic exists with a different partition count than configured."""


#: what a Kafka client raises when it cannot bootstrap (named here: only the engine imports
#: aiokafka)
BootstrapError = KafkaConnectionError


class BrokerAccessError(RuntimeError):
    """The broker answers but refuses this client: its certificate is not trusted, or the
    SASL credentials are wrong. Retrying does not help: the settings must change."""


async def access_problem(kafka: KafkaSettings, timeout_s: float = 10.0) -> str | None:
    """Why the first bootstrap broker refuses this client (TLS trust, SASL credentials), in
    words naming the settings to fix; None when it takes us or cannot be reached at all
    (a broker that is down is waited for, not refused). aiokafka itself only reports
    "Unable to bootstrap", so one connection is opened here to find out."""
    host, _, port = kafka.servers[0].rpartition(":")
    options = client_options(kafka)
    options.pop("bootstrap_servers")
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), **options), timeout_s)
    except ssl.SSLCertVerificationError as error:
        return (
            f"the broker at {kafka.servers[0]} presents a certificate that "
            f"BEDSIDE_KAFKA__SSL_CAFILE ({kafka.ssl_cafile or 'the system CAs'}) does not "
            f"trust: {error.verify_message}"
        )
    except ssl.SSLError as error:
        return f"TLS with the broker at {kafka.servers[0]} failed: {error.reason or error}"
    except (SaslAuthenticationFailed, AuthenticationFailedError) as error:
        return (
            f"the broker at {kafka.servers[0]} refused the SASL {kafka.sasl_mechanism} "
            f"credentials of user {kafka.sasl_username!r}: check BEDSIDE_KAFKA__SASL_USERNAME "
            f"and BEDSIDE_KAFKA__SASL_PASSWORD ({error})"
        )
    except (OSError, TimeoutError, KafkaError):
        return None  # not reachable (yet): the worker waits for it and says so
    conn.close()
    return None


_PARTITIONER = DefaultPartitioner()


@functools.lru_cache(maxsize=1 << 17)  # murmur2 is pure Python: once per patient
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as every producer keys patients)
    gives ``key`` among ``partitions``."""
    everything = list(range(partitions))
    return int(_PARTITIONER(key, everything, everything))


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """TLS context for SSL/SASL_SSL, built from the configured files."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile and kafka.ssl_keyfile:
        password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile), password)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        password = kafka.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def faust_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """The same security settings in Faust's terms."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def cluster_id(kafka: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """The cluster id the broker reports (Metadata v2+)."""
    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **client_options(kafka))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            described = await admin.describe_cluster()
    except Exception as exc:  # any failure to talk to it means "not reachable"
        msg = (
            f"Kafka broker not reachable at {kafka.bootstrap} ({type(exc).__name__}). "
            "Start the local stack with 'bedside stack up' or set BEDSIDE_KAFKA__BOOTSTRAP."
        )
        raise BrokerUnavailableError(msg) from exc
    finally:
        await admin.close()
    value = described.get("cluster_id")
    return str(value) if value is not None else None


def resolve_profile(kafka: KafkaSettings) -> BrokerProfile:
    """Turn ``auto`` into ``embedded`` or ``kafka`` by asking the broker for its cluster id."""
    if kafka.profile is not BrokerProfile.AUTO:
        return kafka.profile
    # May be called from inside a running event loop (tests, the CLI): probe on a thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        found = pool.submit(asyncio.run, cluster_id(kafka)).result()
    profile = BrokerProfile.EMBEDDED if found == kafka.embedded_cluster_id else BrokerProfile.KAFKA
    log.info(
        "broker at %s reports cluster id %r: using the %s profile",
        kafka.bootstrap,
        found,
        profile.value,
    )
    return profile


async def topic_partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    """The partitions of ``topic``, asked of the broker for that topic (a consumer's
    ``partitions_for_topic`` answers only from metadata it happens to hold: on Apache Kafka,
    nothing for a topic it does not subscribe to). Raises TopicAuthorizationFailedError
    when this principal may not describe it, UnknownTopicOrPartitionError when it is
    missing (both KafkaError: a follower waits and retries)."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    code = described.get("error_code", 0)
    if code == TopicAuthorizationFailedError.errno:
        raise TopicAuthorizationFailedError(topic)
    if code != 0 or not described.get("partitions"):
        raise UnknownTopicOrPartitionError(topic)
    return sorted(p["partition"] for p in described["partitions"])


async def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    An existing topic with another partition count is an error: Tansu cannot add partitions
    and on Kafka it would silently move patients between partitions.
    """
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in missing]
            )
            for name, code, message in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    msg = f"could not create topic {name}: error {code} {message}"
                    raise RuntimeError(msg)
            await _until_led(admin, missing, partitions)
        present = [name for name in wanted if name in existing]
        if present:
            for described in await admin.describe_topics(present):
                count = len(described["partitions"])
                if count != partitions:
                    msg = (
                        f"topic {described['topic']} has {count} partitions, settings say "
                        f"{partitions}; recreate it or set BEDSIDE_TOPICS__PARTITIONS={count}"
                    )
                    raise TopicMismatchError(msg)
        return missing
    finally:
        await admin.close()


LEADERS_WAIT_S = 15.0


async def _until_led(admin: AIOKafkaAdminClient, names: list[str], partitions: int) -> None:
    """Wait until every partition of new topics has a leader in the brokers' metadata: Kafka
    answers CreateTopics before it elects them, and a producer that writes at once is told
    the topic is unknown and retries, logging each retry. After ``LEADERS_WAIT_S`` the topics
    are used as they are (the clients retry)."""
    deadline = asyncio.get_running_loop().time() + LEADERS_WAIT_S
    while True:
        described = await admin.describe_topics(names)
        led = sum(
            1
            for topic in described
            if not topic.get("error_code")
            for partition in topic.get("partitions", [])
            if partition.get("leader", -1) >= 0 and not partition.get("error_code")
        )
        if led >= partitions * len(names):
            return
        if asyncio.get_running_loop().time() > deadline:
            log.warning("new topics have %d of %d partition leaders", led, partitions * len(names))
            return
        await asyncio.sleep(0.2)


async def ensure_bedside_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Pre-create every Bedside topic with its configured partitions."""
    return await ensure_topics(kafka, topics.all, topics.partitions, topics.replication_factor)
