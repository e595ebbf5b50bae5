"""``bedside dead-letters``: what was refused or quarantined, and why, read off the topic.

Reads the dead-letter topic from its start to its current end (no consumer group) and prints
one JSON object per letter. ``--decode`` adds ``original``: the original as text when it is
UTF-8, and for quarantined patient states (reason ``state``) the window's stored document
(shown as JSON), so an operator can see what the patient's state held before the worker
reset it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError

from streams.engine.broker import client_options, topic_partitions
from streams.processing.codec import FORMAT_VERSION
from streams.settings import Settings
from streams.windows.compact import decode_document


def decoded(letter: dict[str, Any]) -> Any:
    """The letter's original, readable: text, JSON, or a stored window as JSON."""
    raw = base64.b64decode(letter.get("original_b64") or "")
    if letter.get("reason") == "state":
        try:
            return _json_safe(decode_document(FORMAT_VERSION, raw))
        except Exception:  # noqa: BLE001 - a corrupt state is why it is here
            return {"undecodable_state_b64": letter.get("original_b64")}
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"binary_b64": letter.get("original_b64")}


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class TopicNotReadableError(ValueError):
    """The topic does not exist, or this principal may not describe it."""


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partitions of ``topic``. Never "none": an empty answer would read as "no dead
    letters" or "the audit trail is intact" when the topic is missing or this principal may
    not see it."""
    try:
        return await topic_partitions(settings.kafka, topic)
    except TopicAuthorizationFailedError:
        user = settings.kafka.sasl_username or "this client"
        msg = f"topic {topic}: {user} may not describe it (Kafka ACLs)"
        raise TopicNotReadableError(msg) from None
    except UnknownTopicOrPartitionError:
        msg = f"topic {topic} does not exist on {settings.kafka.bootstrap}"
        raise TopicNotReadableError(msg) from None


async def read_letters(settings: Settings) -> list[dict[str, Any]]:
    """Every letter on the dead-letter topic now, oldest first per partition."""
    return await read_topic(settings, settings.topics.deadletter)


async def read_topic(
    settings: Settings, topic: str, *, with_key: bool = True
) -> list[dict[str, Any]]:
    """Every JSON record on ``topic`` now (with its ``key``), oldest first per partition."""
    found = await partitions_of(settings, topic)
    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, **client_options(settings.kafka)
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[dict[str, Any]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    try:
                        letter = orjson.loads(record.value or b"")
                    except orjson.JSONDecodeError:
                        letter = None  # anything can be written to a topic: shown as such
                    if not isinstance(letter, dict):
                        letter = {"unreadable": True, "offset": record.offset,
                                  "partition": record.partition}  # fmt: skip
                    if with_key:
                        letter["key"] = (record.key or b"").decode("utf-8", "replace")
                    letters.append(letter)
        return letters
    finally:
        await consumer.stop()


def select(
    letters: list[dict[str, Any]], reason: str | None, key: str | None, decode: bool
) -> Iterator[dict[str, Any]]:
    for letter in letters:
        if (reason and letter.get("reason") != reason) or (key and letter["key"] != key):
            continue
        if decode:
            letter = {**letter, "original": decoded(letter)}
        yield letter


def dead_letters(
    settings: Settings, reason: str | None, key: str | None, decode: bool
) -> list[bytes]:
    letters = asyncio.run(read_letters(settings))
    return [orjson.dumps(letter) for letter in select(letters, reason, key, decode)]
