"""The tamper-evident audit trail: every alarm event of a patient is chained to the one before.

Each event published on the alerts topic carries ``audit: {"seq": n, "prev": ..., "hash":
...}``; the chain's head lives in the patient's window, stored with the events in one
checkpoint, so a batch replayed after a crash seals its events again from the same head.
A replay can therefore publish two versions of one link (the first attempt's events were
sent, its state was not stored): :func:`verify` counts those as *redelivered* branches,
never as the chain. What it reports as broken: an event whose hash does not match its
content (changed, or forged without the key), a link whose ``prev`` is nowhere (an event
removed), and a chain that does not start at the genesis link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..windows.patient import PatientWindow
from .signing import GENESIS, audit_hash


def seal(key: bytes, window: PatientWindow, events: list[dict[str, Any]]) -> list[bytes]:
    """The events as published, each chained to the one before in ``window``'s trail."""
    sealed = []
    for event in events:
        prev = window.audit_head.hex() if window.audit_head else GENESIS
        link = audit_hash(key, prev, event)
        window.audit_seq += 1
        window.audit_head = bytes.fromhex(link)
        sealed.append(
            orjson.dumps({**event, "audit": {"seq": window.audit_seq, "prev": prev, "hash": link}})
        )
    return sealed


@dataclass
class PatientTrail:
    events: int = 0
    length: int = 0  # the longest verified chain from the genesis link
    head: str = GENESIS
    redelivered: int = 0  # links sealed twice by a replayed batch (at-least-once)
    problems: list[str] = field(default_factory=list)


def verify(key: bytes, events: Iterable[dict[str, Any]]) -> dict[str, PatientTrail]:
    """Each patient's trail as found in ``events`` (any order, duplicates allowed)."""
    by_patient: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    trails: dict[str, PatientTrail] = defaultdict(PatientTrail)
    for event in events:
        patient = str(event.get("patient_id"))
        trail = trails[patient]
        trail.events += 1
        audit = event.get("audit")
        if not isinstance(audit, dict):
            trail.problems.append(f"event {event.get('alert_id')} has no audit link")
            continue
        if audit_hash(key, str(audit.get("prev")), event) != audit.get("hash"):
            trail.problems.append(
                f"link {audit.get('seq')} ({event.get('transition')} of "
                f"{event.get('alert_id')}) does not match its content: changed or forged"
            )
            continue
        by_patient[patient][str(audit["hash"])] = event
    for patient, links in by_patient.items():
        _walk(trails[patient], links)
    return dict(trails)


def _walk(trail: PatientTrail, links: dict[str, dict[str, Any]]) -> None:
    """Follow the chain from the genesis link; name what does not hang on it."""
    children: dict[str, list[str]] = defaultdict(list)
    for link, event in links.items():
        children[str(event["audit"]["prev"])].append(link)
    on_chain: set[str] = set()
    # the chain is the longest path from genesis; shorter branches are redeliveries
    depth: dict[str, int] = {}
    frontier = [(GENESIS, 0)]
    while frontier:
        node, level = frontier.pop()
        for child in children.get(node, []):
            if child not in depth:
                depth[child] = level + 1
                frontier.append((child, level + 1))
    if depth:
        head = max(depth, key=lambda link: depth[link])
        trail.head, trail.length = head, depth[head]
        node = head
        while node != GENESIS:
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
