"""The audit chain: sealed by the pipeline, verified from the alerts topic's events."""

from __future__ import annotations

from typing import Any

import orjson

from streams.access.audit import seal, verify
from streams.access.signing import Keys, action_signature, action_signed
from streams.http.patient_window import window_document
from streams.processing import codec
from streams.processing.state import PatientState

KEYS = Keys.derive("unit-test-signing-key-0123456789abcdef")


def event(i: int, patient: str = "p1") -> dict[str, Any]:
    return {"alert_id": f"a{i}", "patient_id": patient, "transition": "opened", "n": i}


def sealed(state: PatientState, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` sealed on ``state``'s chain, as the pipeline seals them (it keeps the head)."""
    raws, state.audit = seal(KEYS.audit, state.audit, events)
    return [orjson.loads(raw) for raw in raws]


def test_a_whole_chain_verifies_in_any_order_with_duplicates() -> None:
    window = PatientState.new("p1")
    chain = sealed(window, [event(0), event(1)]) + sealed(window, [event(2)])
    assert [e["audit"]["seq"] for e in chain] == [1, 2, 3]
    assert window.audit.head.hex() == chain[-1]["audit"]["hash"]
    stored = codec.decode(codec.encode(window))  # the head survives the store
    assert (stored.audit.seq, stored.audit.head) == (3, window.audit.head)
    trail = verify(KEYS.audit, [chain[2], chain[0], chain[1], chain[1]])["p1"]
    assert (trail.length, trail.problems, trail.redelivered) == (3, [], 0)
    # the window says how long the chain must be: its newest events cannot go unseen
    assert window_document(stored)["audit"] == {"seq": 3, "head": trail.head}
    assert verify(KEYS.audit, chain[:2])["p1"].length == 2 < window_document(stored)["audit"]["seq"]


def test_changed_removed_and_forged_events_are_named() -> None:
    window = PatientState.new("p1")
    chain = sealed(window, [event(i) for i in range(4)])
    changed = [*chain[:1], {**chain[1], "by": "someone else"}, *chain[2:]]
    problems = verify(KEYS.audit, changed)["p1"].problems
    assert any("does not match its content" in p for p in problems)
    removed = [chain[0], chain[2], chain[3]]
    problems = verify(KEYS.audit, removed)["p1"].problems
    assert any("missing" in p for p in problems)
    other = Keys.derive("another-deployment-key-0123456789abcdef")
    forged = orjson.loads(seal(other.audit, window.audit, [event(9)])[0][0])
    problems = verify(KEYS.audit, [*chain, forged])["p1"].problems
    assert any("changed or forged" in p for p in problems)
    assert verify(KEYS.audit, [event(5)])["p1"].problems  # no link at all


def test_a_replayed_batch_is_a_redelivered_branch_not_a_break() -> None:
    """At-least-once: the first attempt's events were sent, its state was not stored."""
    window = PatientState.new("p1")
    first = sealed(window, [event(0)])
    stored = codec.encode(window)
    lost = sealed(window, [{**event(1), "event_time": "first attempt"}])
    again = codec.decode(stored)  # the state before the lost batch
    kept = sealed(again, [{**event(1), "event_time": "second attempt"}, event(2)])
    trail = verify(KEYS.audit, first + lost + kept)["p1"]
    assert (trail.length, trail.redelivered, trail.problems) == (3, 1, [])


def test_patients_have_their_own_chains() -> None:
    a, b = PatientState.new("a"), PatientState.new("b")
    events = sealed(a, [event(0, "a")]) + sealed(b, [event(0, "b"), event(1, "b")])
    trails = verify(KEYS.audit, events)
    assert (trails["a"].length, trails["b"].length) == (1, 2)


def test_action_signatures_cover_every_field() -> None:
    action = {"alert_id": "a", "patient_id": "p", "action": "ack", "by": "alice", "minutes": 30}
    signed = {**action, "sig": action_signature(KEYS.actions, action)}
    assert action_signed(KEYS.actions, signed)
    assert not action_signed(KEYS.actions, {**signed, "by": "Dr. Forged"})
    assert not action_signed(KEYS.actions, action)  # unsigned
    assert not action_signed(KEYS.audit, signed)  # the audit key signs no action


def test_seq_is_inside_the_mac_and_republished_links_are_counted() -> None:
    window = PatientState.new("p1")
    chain = sealed(window, [event(i) for i in range(3)])
    moved = {**chain[1], "audit": {**chain[1]["audit"], "seq": 7}}
    assert any(
        "changed or forged" in p for p in verify(KEYS.audit, [chain[0], moved])["p1"].problems
    )
    trail = verify(KEYS.audit, [*chain, chain[1], chain[1]])["p1"]
    assert (trail.length, trail.duplicated, trail.problems) == (3, 2, [])


def test_a_chain_cut_by_retention_starts_at_its_oldest_link() -> None:
    window = PatientState.new("p1")
    chain = sealed(window, [event(i) for i in range(5)])
    trail = verify(KEYS.audit, chain[2:])["p1"]  # the oldest two are past the retention
    assert (trail.starts_at, trail.length, trail.problems) == (3, 3, [])
    gap = verify(KEYS.audit, [*chain[2:3], *chain[4:]])["p1"]  # one in the middle removed
    assert any("removed" in p for p in gap.problems)


def test_links_sealed_before_seq_was_covered_still_verify() -> None:
    from streams.access.signing import GENESIS, audit_hash

    old = event(0)
    link = audit_hash(KEYS.audit, GENESIS, old)  # the former form: prev and event only
    trail = verify(KEYS.audit, [{**old, "audit": {"seq": 1, "prev": GENESIS, "hash": link}}])
    assert (trail["p1"].length, trail["p1"].legacy, trail["p1"].problems) == (1, 1, [])


def test_worker_alarms_chain_on_their_own() -> None:
    from streams.access.audit import seal_one
    from streams.access.signing import GENESIS

    opened = seal_one(KEYS.audit, {"alert_id": "w1", "patient_id": "*", "scope": "worker",
                                   "transition": "opened"}, 1, GENESIS)  # fmt: skip
    resolved = seal_one(KEYS.audit, {**opened, "transition": "resolved"}, 2,
                        opened["audit"]["hash"])  # fmt: skip
    trails = verify(KEYS.audit, [opened, resolved])
    assert trails["worker:w1"].length == 2 and not trails["worker:w1"].problems
