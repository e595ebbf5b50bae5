"""Every rule of the alarm lifecycle, on the pure engine."""

from __future__ import annotations

from streams.alerts.lifecycle import Alarm, Finding, Lifecycle, alert_id

MIN = 60_000


def finding(kind: str) -> Finding:
    return Finding(kind, f"{kind} holds", {"value": 1}, 1.0, "rules-1")


def engine() -> Lifecycle:
    return Lifecycle("syn-p1", {}, {})


def run(life: Lifecycle, kind: str, holds: list[bool], start: int = 0, step: int = 5 * MIN):
    events = []
    for i, h in enumerate(holds):
        events += life.evaluate({kind: finding(kind) if h else None}, start + i * step)
    return events


def test_one_noisy_reading_does_not_page_two_of_three_do() -> None:
    life = engine()
    assert run(life, "low", [False, True, False, False]) == []
    events = run(life, "low", [True, False, True], start=20 * MIN)
    assert [(e["kind"], e["transition"]) for e in events] == [("low", "opened")]
    assert events[0]["alert_id"] == alert_id("syn-p1", "low", 30 * MIN)  # stable id


def test_clearing_needs_consecutive_clear_evaluations() -> None:
    life = engine()
    run(life, "high", [True, True])
    assert run(life, "high", [False, True, False], start=10 * MIN) == []  # not twice in a row
    events = run(life, "high", [False], start=25 * MIN)
    assert [(e["transition"], e["state"]) for e in events] == [("resolved", "resolved")]
    assert "high" not in life.alarms


def test_unacknowledged_alarm_escalates_severity_and_target_to_the_last_step() -> None:
    life = engine()
    run(life, "low", [True, True])  # opens at 5 min, warning, care team
    escalations = [e for e in life.tick(5 * MIN + 15 * MIN)]
    assert [(e["transition"], e["severity"], e["target"]) for e in escalations] == [
        ("escalated", "urgent", "charge_nurse")
    ]
    again = life.tick(5 * MIN + 30 * MIN)
    assert [(e["severity"], e["target"]) for e in again] == [("critical", "physician")]
    later = life.tick(5 * MIN + 45 * MIN)
    assert [e["transition"] for e in later] == ["realerted"]  # no step beyond the last


def test_an_open_alarm_re_alerts_at_its_interval() -> None:
    life = engine()
    run(life, "high", [True, True])
    assert life.tick(5 * MIN + 119 * MIN) == []
    assert [e["transition"] for e in life.tick(5 * MIN + 120 * MIN)] == ["realerted"]


def test_acknowledgement_stops_escalation_and_re_alerts() -> None:
    life = engine()
    (opened,) = run(life, "low", [True, True])
    (ack,) = life.acknowledge(opened["alert_id"], "nurse-7", 6 * MIN)
    assert (ack["transition"], ack["state"], ack["by"]) == (
        "acknowledged",
        "acknowledged",
        "nurse-7",
    )
    assert life.tick(5 * MIN + 10 * 60 * MIN) == []
    assert life.acknowledge(opened["alert_id"], "nurse-7", 7 * MIN) == []  # once
    assert life.acknowledge("unknown", "nurse-7", 7 * MIN) == []


def test_snooze_silences_until_it_expires() -> None:
    life = engine()
    (opened,) = run(life, "low", [True, True])
    (snoozed,) = life.snooze(opened["alert_id"], "nurse-7", 30, 6 * MIN)
    assert snoozed["state"] == "snoozed" and snoozed["note"] is None
    assert life.tick(6 * MIN + 29 * MIN) == []  # no re-alert, no escalation
    (expired,) = life.tick(6 * MIN + 30 * MIN)
    assert (expired["transition"], expired["state"]) == ("snooze_expired", "open")


def test_a_snooze_never_hides_an_urgent_low_or_news2_high() -> None:
    for kind, interval in (("urgent_low", 5), ("news2_high", 15)):
        life = engine()
        holds = [True, True] if kind == "urgent_low" else [True]
        opened = run(life, kind, holds)[0]
        (snoozed,) = life.snooze(opened["alert_id"], "nurse-7", 120, 6 * MIN)
        assert "keep re-alerting" in snoozed["note"]
        realerts = [e for m in range(1, 40) for e in life.tick(6 * MIN + m * MIN)]
        assert len(realerts) >= 39 // interval and {e["transition"] for e in realerts} == {
            "realerted"
        }
        # acknowledged, it still comes back while the condition lasts
        life.acknowledge(opened["alert_id"], "nurse-7", 50 * MIN)
        assert [e["transition"] for e in life.tick(50 * MIN + interval * MIN)] == ["realerted"]


def test_a_snoozed_low_does_not_hold_back_an_urgent_low() -> None:
    life = engine()
    (low,) = run(life, "low", [True, True])
    life.snooze(low["alert_id"], "nurse-7", 120, 6 * MIN)
    events = []
    for i in range(2):
        events += life.evaluate(
            {"low": None, "urgent_low": finding("urgent_low")}, (10 + 5 * i) * MIN
        )
    assert ("urgent_low", "opened") in [(e["kind"], e["transition"]) for e in events]


def test_quiet_hours_hold_back_routine_re_alerts_only() -> None:
    life = engine()
    run(life, "high", [True, True])
    run(life, "urgent_low", [True, True])
    urgent = life.alarms["urgent_low"]
    life.acknowledge(urgent.alert_id, "nurse", 11 * MIN)
    events = life.tick(10 * 60 * MIN, quiet=True)
    assert [e["kind"] for e in events] == ["urgent_low"]


def test_alarm_state_round_trips() -> None:
    life = engine()
    run(life, "low", [True, True])
    alarm = life.alarms["low"]
    assert Alarm.from_list(alarm.to_list()) == alarm


class _RecordsEverything(Lifecycle):
    """The lifecycle without its shortcut: every evaluation is recorded."""

    def _settled(self, kind: str) -> bool:
        return False


def test_skipping_settled_kinds_changes_no_decision() -> None:
    """Random condition sequences (with acks, snoozes and ticks) give the same transitions
    whether or not 'does not hold' is recorded for kinds with nothing open or pending."""
    import random

    rng = random.Random(11)
    kinds = ["low", "urgent_low", "high", "news2_medium", "cgm_stale_15", "falling_fast"]
    for _ in range(200):
        fast = Lifecycle("p", {}, {})
        full = _RecordsEverything("p", {}, {})
        now = 0
        for _ in range(60):
            now += rng.choice([60_000, 300_000, 900_000])
            step = rng.random()
            if step < 0.8:
                evaluated = {
                    k: (finding(k) if rng.random() < 0.3 else None)
                    for k in rng.sample(kinds, rng.randint(1, len(kinds)))
                }
                assert fast.evaluate(evaluated, now) == full.evaluate(evaluated, now)
            elif step < 0.9:
                assert fast.tick(now) == full.tick(now)
            elif fast.alarms:
                alarm = rng.choice(sorted(fast.alarms))
                aid = fast.alarms[alarm].alert_id
                if rng.random() < 0.5:
                    assert fast.acknowledge(aid, "n", now) == full.acknowledge(aid, "n", now)
                else:
                    assert fast.snooze(aid, "n", 30, now) == full.snooze(aid, "n", 30, now)
            assert fast.alarms.keys() == full.alarms.keys()
