"""Output topics are inputs too: hostile records never break the alert and ward views.

Property tests feed the views arbitrary JSON, and real events with one field replaced by
arbitrary JSON, the way a buggy or malicious writer on ``bedside.alerts`` / ``bedside.risk``
could. Whatever arrives: the view never raises, what it keeps renders (the ward rows, the
alarm list, a patient's history) for a user, and a good event after the bad ones applies.
"""

from __future__ import annotations

from typing import Any

import orjson
from factories import cgm, vital
from fakes import apply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.alert_view import AlertView
from streams.engine.risk_view import WardView
from streams.http.pages import WardApi
from streams.http.signin import ANYONE, Access
from streams.processing.pipeline import PatientPipeline
from streams.settings import KafkaSettings, Settings, StreamSettings, WebSettings

_pipeline = PatientPipeline(StreamSettings())
_, _output = apply(
    _pipeline,
    "syn-h1",
    None,
    [cgm(0, 60), cgm(5, 52), cgm(10, 50), vital("8867-4", 10, 130), vital("59408-5", 10, 91)],
)
ALERT: dict[str, Any] = orjson.loads(_output.alerts[0])
RISK: dict[str, Any] = orjson.loads(_output.risk or b"{}")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def replaced(event: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``event`` with one field (or one score's field) replaced by arbitrary JSON."""
    top = st.tuples(st.sampled_from(sorted(event)), json_values).map(
        lambda kv: {**event, kv[0]: kv[1]}
    )
    if "scores" not in event:
        return top
    score = event["scores"][0]
    inner = st.tuples(st.sampled_from(sorted(score)), json_values).map(
        lambda kv: {**event, "scores": [{**score, kv[0]: kv[1]}, *event["scores"][1:]]}
    )
    latest = st.tuples(st.text(max_size=12), json_values).map(
        lambda kv: {**event, "inputs": {**event["inputs"], "latest": {kv[0]: kv[1]}}}
    )
    return top | inner | latest


def records(event: dict[str, Any]) -> st.SearchStrategy[bytes]:
    garbage = st.binary(max_size=40)
    return garbage | json_values.map(orjson.dumps) | replaced(event).map(orjson.dumps)


def render_everything(alerts: AlertView, ward: WardView) -> None:
    access = Access(Settings(web=WebSettings(auth="none")))
    api = WardApi(ward, alerts, access)
    body = api.rows(ANYONE)
    orjson.dumps(body)
    for patient in list(ward.rows) + [e["patient_id"] for e in alerts.open.values()]:
        orjson.dumps(api.patient(ANYONE, patient))
    ward.flush()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(ALERT), min_size=1, max_size=5), st.lists(records(RISK), max_size=5))
def test_hostile_records_are_skipped_and_every_view_still_renders(
    alert_records: list[bytes], risk_records: list[bytes]
) -> None:
    alerts = AlertView(KafkaSettings(), "bedside.alerts")
    ward = WardView(KafkaSettings(), "bedside.risk")
    for raw in alert_records:
        alerts.take(raw)
    for raw in risk_records:
        ward.take(raw)
    render_everything(alerts, ward)
    # the views still take good events after the bad ones
    assert alerts.take(orjson.dumps(ALERT)) is None and ward.take(orjson.dumps(RISK)) is None
    assert ALERT["alert_id"] in alerts.open and RISK["patient_id"] in ward.rows
    render_everything(alerts, ward)


def test_the_records_of_the_report_are_refused_and_counted() -> None:
    alerts = AlertView(KafkaSettings(), "bedside.alerts")
    ward = WardView(KafkaSettings(), "bedside.risk")
    assert alerts.take(orjson.dumps({**ALERT, "patient_id": ["x"]})) == "ValidationError"
    latest = {**RISK["inputs"]["latest"], "heart_rate": "x"}
    hostile = {**RISK, "inputs": {**RISK["inputs"], "latest": latest}}
    assert ward.take(orjson.dumps(hostile)) == "ValidationError"
    assert alerts.take(b"{oops") == "JSONDecodeError"
    assert (alerts.skipped, ward.skipped) == (2, 1)
    assert not alerts.open and not ward.rows
    render_everything(alerts, ward)


def test_an_unreadable_quarantined_state_closes_the_patients_earlier_alarms() -> None:
    alerts = AlertView(KafkaSettings(), "bedside.alerts")
    assert alerts.take(orjson.dumps(ALERT)) is None
    fault = {**ALERT, "alert_id": "f" * 24, "kind": "monitoring_fault", "severity": "urgent",
             "evidence": {"earlier_alarms": "unreadable"}}  # fmt: skip
    assert alerts.take(orjson.dumps(fault)) is None
    assert set(alerts.open) == {fault["alert_id"]}
    closed = alerts.get(ALERT["alert_id"])
    assert closed is not None and closed["state"] == "resolved"
    assert "quarantined" in closed["reason"]
