"""The embedded broker profile: what makes Faust correct and fast on the local Tansu broker.

Tansu (the Kafka-compatible broker of ``bedside stack``) differs from Apache Kafka in ways
that break Faust unless it is tuned (measured facts in the project's infra notes):

1. ListOffsets(latest) answers the last *batch's* base offset + 1 instead of the high
   watermark, so table recovery stops early and restores stale values. The fix: ask
   ListOffsets, then fetch from that last batch and take the high watermark the fetch
   response carries (it is correct). Runs only during recovery.
2. Fetch long-polls sleep half the remaining wait, and Faust hard-codes 1,500 ms: the
   consumer's fetch wait is set to ~100 ms.
3. JoinGroup is held for half the session timeout: 6 s session, 1 s heartbeat, 10 s
   rebalance timeout.
4. No idempotent producer or transactions: at-least-once only.
5. Topics must exist before Faust starts (``bedside stack up`` pre-creates them).

The profile is selected by the broker URL scheme ``tansu://`` (registered as a Faust
transport entry point), so it is one named switch rather than ifs across the code. Every
third-party internal it touches is listed in :func:`check_faust_internals`, which refuses
to run on a Faust/aiokafka whose internals changed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from .consumer import BatchDelivery
from .consumer import source_digest as consumer_source_digest

log = logging.getLogger(__name__)

TRANSPORT_SCHEME = "tansu"


@dataclass(frozen=True)
class EmbeddedBrokerProfile:
    """Faust settings for the embedded Tansu broker."""

    fetch_max_wait_ms: int = 100
    broker_session_timeout: float = 6.0
    broker_heartbeat_interval: float = 1.0
    broker_rebalance_timeout: float = 10.0
    processing_guarantee: str = "at_least_once"
    highwater_fetch_timeout_s: float = 10.0

    def faust_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`faust.App` under this profile."""
        return {
            "broker_session_timeout": self.broker_session_timeout,
            "broker_heartbeat_interval": self.broker_heartbeat_interval,
            "broker_rebalance_timeout": self.broker_rebalance_timeout,
            "processing_guarantee": self.processing_guarantee,
        }


EMBEDDED_PROFILE = EmbeddedBrokerProfile()


class IncompatibleFaustError(RuntimeError):
    """The installed Faust/aiokafka no longer has the internals the profile relies on."""


# SHA-256 of the (whitespace-normalised) source of each third-party function the profile
# overrides or depends on. If one changes, the override may be wrong: re-verify the fix
# against the infra notes, then update the digest.
_PINNED_SOURCES: dict[str, str] = {
    "AIOKafkaConsumerThread._highwaters": (
        "5915b03acfb946237b3dd6f67fa4223f3261787fc25dbb6f13d63e24dc89bb13"
    ),
    "AIOKafkaConsumerThread._create_worker_consumer": (
        "efdbd971bf6be796508258a17d5c019da0731165e5642d3e3015ea4c0aba3dd2"
    ),
    "Consumer._new_consumer_thread": (
        "cd26d06ef170e339ed80557675a524b11167fa1a370ecb3d4fece0642d6d0e6c"
    ),
    "Recovery._build_highwaters": (
        "b0101f05440da021d69a87f341092c99ac2dc2f711ac4bcf1aa4ff448f5050db"
    ),
}


def _pinned_owner(name: str) -> Any:
    from faust.tables.recovery import Recovery

    owners = {
        "AIOKafkaConsumerThread": faust_aiokafka.AIOKafkaConsumerThread,
        "Consumer": faust_aiokafka.Consumer,
        "Recovery": Recovery,
    }
    return owners[name]


def source_digest(name: str) -> str:
    """SHA-256 of a pinned third-party function's source, whitespace-normalised."""
    owner, _, attribute = name.partition(".")
    return consumer_source_digest(getattr(_pinned_owner(owner), attribute))


def check_faust_internals() -> None:
    """Fail loudly if the internals this profile overrides have changed."""
    problems: list[str] = []
    for dotted, expected in _PINNED_SOURCES.items():
        try:
            actual = source_digest(dotted)
        except (AttributeError, OSError, TypeError) as exc:
            problems.append(f"{dotted}: missing ({exc})")
            continue
        if actual != expected:
            problems.append(f"{dotted}: source changed (sha256 {actual})")
    consumer = aiokafka.AIOKafkaConsumer.__init__
    if "fetch_max_wait_ms" not in inspect.signature(consumer).parameters:
        problems.append("aiokafka.AIOKafkaConsumer no longer takes fetch_max_wait_ms")
    if problems:
        msg = (
            f"faust-streaming {faust.__version__} / aiokafka {aiokafka.__version__} differ from "
            "the versions the embedded broker profile was verified on; "
            "re-verify streams/engine/embedded.py:"
            "\n  " + "\n  ".join(problems)
        )
        raise IncompatibleFaustError(msg)


async def true_highwaters(
    bootstrap: list[str],
    listed: Mapping[TopicPartition, int],
    *,
    timeout_s: float,
    **client_options: Any,
) -> dict[TopicPartition, int]:
    """High watermarks read from fetch responses, given Tansu's ListOffsets answers.

    Tansu's ListOffsets returns the last batch's base offset + 1, so a fetch from
    ``listed - 1`` returns that batch and, with it, the true high watermark.
    """
    result = {tp: offset for tp, offset in listed.items() if offset <= 0}
    pending = {tp: offset for tp, offset in listed.items() if offset > 0}
    if not pending:
        return result
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=10,
        **client_options,
    )
    await consumer.start()
    try:
        consumer.assign(list(pending))
        for tp, offset in pending.items():
            consumer.seek(tp, offset - 1)
        async with asyncio.timeout(timeout_s):
            while True:
                await consumer.getmany(*pending, timeout_ms=100)
                for tp in list(pending):
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        result[tp] = max(highwater, pending.pop(tp))
                        consumer.pause(tp)
                if not pending:
                    return result
    finally:
        await consumer.stop()


class TansuConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with the embedded broker profile applied."""

    profile: EmbeddedBrokerProfile = EMBEDDED_PROFILE

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes fetch_max_wait_ms=1500 literally; the fetcher is built from this
        # attribute at start(), so setting it before start is enough.
        consumer._fetch_max_wait_ms = self.profile.fetch_max_wait_ms
        return consumer

    async def _highwaters(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        consumer = self._ensure_consumer()
        listed: Mapping[TopicPartition, int] = await consumer.end_offsets(partitions)
        conf = self.app.conf
        auth = faust_aiokafka.credentials_to_aiokafka_auth(
            conf.broker_credentials, conf.ssl_context
        )
        fixed = await true_highwaters(
            faust_aiokafka.server_list(self.transport.url, faust_aiokafka.Transport.default_port),
            listed,
            timeout_s=self.profile.highwater_fetch_timeout_s,
            **auth,
        )
        changed = sum(1 for tp, value in fixed.items() if value != listed[tp])
        log.info(
            "embedded profile: corrected %d of %d changelog high watermarks", changed, len(fixed)
        )
        return fixed


class TansuConsumer(BatchDelivery, faust_aiokafka.Consumer):
    """Consumer that runs :class:`TansuConsumerThread`, with Bedside's batch delivery."""

    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(faust_aiokafka.Transport):
    """Faust transport for ``tansu://`` URLs: aiokafka plus the embedded broker profile."""

    Consumer = TansuConsumer
