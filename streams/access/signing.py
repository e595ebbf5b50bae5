"""Keyed signatures: care-team actions from the gateway, and the audit chain of alarm events.

One secret (``BEDSIDE_SECURITY__SIGNING_KEY``) gives two keys, one per use, so a signature
of one kind can never pass for the other.

- **Actions** on ``bedside.alert-acks`` carry ``sig``: HMAC-SHA256 over the action's fields.
  The worker applies only signed ones (unless ``BEDSIDE_SECURITY__UNSIGNED_ACTIONS`` says
  the deployment restricts who may write the topic, e.g. with Kafka ACLs); anything else is
  dead-lettered with reason ``unauthenticated``.
- **Audit**: every alarm event of a patient carries ``audit: {seq, prev, hash}``, ``hash``
  being HMAC-SHA256 over ``prev``, ``seq`` and the event without ``audit``. Changing, removing or
  inserting an event breaks the chain; ``bedside audit verify`` checks it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger(__name__)

GENESIS = "0" * 64


@dataclass(frozen=True)
class Keys:
    actions: bytes
    audit: bytes

    @classmethod
    def random(cls) -> Keys:
        """Keys of this process only, the same for every caller in it (tests, tools that
        verify nothing later, a worker without a configured key)."""
        return _process_keys()

    @classmethod
    def derive(cls, secret: str | None) -> Keys:
        """Keys from the configured secret; a random one (this process only) without it."""
        if secret is None:
            log.warning(
                "BEDSIDE_SECURITY__SIGNING_KEY is not set: a random key for this process. "
                "Actions signed by other workers are refused and the audit chain cannot be "
                "verified after a restart. Set it (openssl rand -hex 32) beyond development."
            )
            return cls.random()
        return cls._from(secret)

    @classmethod
    def _from(cls, secret: str) -> Keys:
        root = secret.encode()
        return cls(
            actions=hmac.new(root, b"bedside alert actions", hashlib.sha256).digest(),
            audit=hmac.new(root, b"bedside audit chain", hashlib.sha256).digest(),
        )


def action_signature(key: bytes, fields: dict[str, Any]) -> str:
    """HMAC of an action's fields (every field but ``sig``), in a canonical order."""
    body = orjson.dumps(
        {k: v for k, v in fields.items() if k != "sig"}, option=orjson.OPT_SORT_KEYS
    )
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def action_signed(key: bytes, fields: dict[str, Any]) -> bool:
    given = fields.get("sig")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, action_signature(key, fields))


def audit_hash(key: bytes, prev: str, event: dict[str, Any], seq: int | None = None) -> str:
    """The chain link of ``event`` (without its ``audit`` field) at ``seq`` after ``prev``.

    ``seq`` None: the links sealed before the sequence number was covered (verified, and
    counted as such, so old trails still check)."""
    body = orjson.dumps(
        {k: v for k, v in event.items() if k != "audit"}, option=orjson.OPT_SORT_KEYS
    )
    head = prev.encode() + b"\n" if seq is None else f"{prev}\n{seq}\n".encode()
    return hmac.new(key, head + body, hashlib.sha256).hexdigest()


@functools.cache
def _process_keys() -> Keys:
    return Keys._from(secrets.token_hex(32))
