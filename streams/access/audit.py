"""The tamper-evident audit trail: every alarm event of a patient is chained to the one before.

Each event published on the alerts topic carries ``audit: {"seq": n, "prev": ..., "hash":
...}`` (the hash covers ``prev``, ``seq`` and the event); the chain's head lives in the
patient's window, stored with the events in one checkpoint, so a batch replayed after a
crash seals its events again from the same head. A replay can therefore publish two
versions of one link (the first attempt's events were sent, its state was not stored):
:func:`verify` counts those as *redelivered* branches, never as the chain. An event
published again as it was (at-least-once delivery, or a copy re-published by someone) is
counted as *duplicated*: it adds nothing to the chain, and it is shown. Worker-wide events
(``monitoring_degraded``, ``patient_id`` ``*``) chain per alarm: opened, then resolved.

What it reports as broken: an event whose hash does not match its content (changed, or
forged without the key), and a link whose ``prev`` is nowhere while older links are there
(an event removed). A chain whose oldest links are gone from the topic (its retention)
is not broken: it *starts at seq N*, said as such.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .signing import GENESIS, audit_hash


@dataclass(frozen=True, slots=True)
class AuditHead:
    """A patient's audit chain as its state keeps it: links sealed so far, the last one."""

    seq: int = 0
    head: bytes = b""


def seal(
    key: bytes, head: AuditHead, events: list[dict[str, Any]]
) -> tuple[list[bytes], AuditHead]:
    """The events as published, each chained to the one before after ``head``; and the
    chain's head after them (the caller keeps it with the patient's state)."""
    if not events:
        return [], head
    sealed = []
    seq, last = head.seq, head.head
    for event in events:
        prev = last.hex() if last else GENESIS
        seq += 1
        link = audit_hash(key, prev, event, seq)
        last = bytes.fromhex(link)
        sealed.append(orjson.dumps({**event, "audit": {"seq": seq, "prev": prev, "hash": link}}))
    return sealed, AuditHead(seq, last)


def seal_one(key: bytes, event: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """``event`` sealed as link ``seq`` after ``prev`` (chains kept outside a window)."""
    link = audit_hash(key, prev, event, seq)
    return {**event, "audit": {"seq": seq, "prev": prev, "hash": link}}


@dataclass
class PatientTrail:
    events: int = 0
    length: int = 0  # the longest verified chain from its first link
    head: str = GENESIS
    starts_at: int = 1  # the chain's first seq on the topic (> 1: older ones past retention)
    redelivered: int = 0  # links sealed twice by a replayed batch (at-least-once)
    duplicated: int = 0  # the same link published again
    legacy: int = 0  # links sealed before seq was covered by the hash
    problems: list[str] = field(default_factory=list)


NOT_AN_EVENT = "(not an alert event)"


def chain_of(event: dict[str, Any]) -> str:
    """Whose chain an event is on: the patient's, or a worker-wide alarm's own."""
    if event.get("scope") == "worker":
        return f"worker:{event.get('alert_id')}"
    return str(event.get("patient_id"))


def verify(key: bytes, events: Iterable[dict[str, Any]]) -> dict[str, PatientTrail]:
    """Each chain's trail as found in ``events`` (any order, duplicates allowed)."""
    by_chain: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    trails: dict[str, PatientTrail] = defaultdict(PatientTrail)
    for event in events:
        if not isinstance(event, dict):  # anything can be written to the topic
            trails[NOT_AN_EVENT].events += 1
            trails[NOT_AN_EVENT].problems.append("a record that is not an alert event")
            continue
        chain = chain_of(event)
        trail = trails[chain]
        trail.events += 1
        audit = event.get("audit")
        if not isinstance(audit, dict):
            trail.problems.append(f"event {event.get('alert_id')} has no audit link")
            continue
        prev, given = str(audit.get("prev")), audit.get("hash")
        seq = audit.get("seq")
        if isinstance(seq, int) and audit_hash(key, prev, event, seq) == given:
            pass
        elif audit_hash(key, prev, event) == given:
            trail.legacy += 1
        else:
            trail.problems.append(
                f"link {seq} ({event.get('transition')} of "
                f"{event.get('alert_id')}) does not match its content: changed or forged"
            )
            continue
        if str(given) in by_chain[chain]:
            trail.duplicated += 1
            continue
        by_chain[chain][str(given)] = event
    for chain, links in by_chain.items():
        _walk(trails[chain], links)
    return dict(trails)


def _walk(trail: PatientTrail, links: dict[str, dict[str, Any]]) -> None:
    """Follow the chain from its first link; name what does not hang on it."""
    children: dict[str, list[str]] = defaultdict(list)
    for link, event in links.items():
        children[str(event["audit"]["prev"])].append(link)
    root = GENESIS
    if GENESIS not in children:
        # no genesis link on the topic: the chain starts at its oldest link still there
        oldest = min(links, key=lambda link: int(links[link]["audit"]["seq"]))
        root = str(links[oldest]["audit"]["prev"])
        trail.starts_at = int(links[oldest]["audit"]["seq"])
    depth: dict[str, int] = {}
    frontier = [(root, 0)]
    while frontier:
        node, level = frontier.pop()
        for child in children.get(node, []):
            if child not in depth:
                depth[child] = level + 1
                frontier.append((child, level + 1))
    on_chain: set[str] = set()
    if depth:
        head = max(depth, key=lambda link: depth[link])
        trail.head, trail.length = head, depth[head]
        node = head
        while node != root:
            on_chain.add(node)
            node = str(links[node]["audit"]["prev"])
    for link, event in links.items():
        audit = event["audit"]
        if link in on_chain:
            continue
        if link in depth:
            trail.redelivered += 1
        else:
            trail.problems.append(
                f"link {audit['seq']} follows {str(audit['prev'])[:12]}…, which is missing: "
                "an event was removed"
            )
