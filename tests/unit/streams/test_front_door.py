"""The web server's front door: Host, Origin and content-type checks; log lines unforgeable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams import logsafe
from streams.http.guard import PAGE_HEADERS, refusal
from streams.settings import WebSettings


@dataclass
class FakeRequest:
    headers: dict[str, str] = field(default_factory=dict)


def refused(settings: WebSettings | None = None, has_body: bool = True, **headers: str) -> Any:
    request = FakeRequest({k.replace("_", "-"): v for k, v in headers.items()})
    return refusal(request, settings or WebSettings(), has_body=has_body)  # type: ignore[arg-type]


def test_a_json_request_from_a_device_or_the_page_passes() -> None:
    assert refused(Host="127.0.0.1:6066", Content_Type="application/json") is None
    assert refused(Host="localhost:6066", Origin="http://localhost:6066",
                   Content_Type="application/fhir+json; charset=utf-8") is None  # fmt: skip
    assert refused(Host="[::1]:6066", Content_Type="application/json") is None


def test_a_cross_site_text_plain_post_is_refused() -> None:
    # once snoozed an alarm for 24 h from a foreign page (CSRF)
    status, _ = refused(Host="127.0.0.1:6066", Origin="https://evil.example",
                        Content_Type="text/plain")  # fmt: skip
    assert status == 403
    assert refused(Host="127.0.0.1:6066", Origin="null", Content_Type="application/json")[0] == 403


def test_a_rebound_host_name_is_refused() -> None:
    # DNS rebinding: a foreign name resolving to the worker
    assert refused(Host="evil.example:6066", Content_Type="application/json")[0] == 403


def test_allowed_hosts_and_the_configured_host_pass() -> None:
    settings = WebSettings(host="10.0.0.5", token="t" * 40, allowed_hosts=["bedside.ward.example"])
    for host in ("10.0.0.5:6066", "bedside.ward.example", "BEDSIDE.ward.example:443"):
        assert refused(settings, Host=host, Content_Type="application/json") is None, host


def test_a_body_must_be_json() -> None:
    assert refused(Host="127.0.0.1", Content_Type="text/plain")[0] == 415
    assert refused(Host="127.0.0.1", Content_Type="application/x-www-form-urlencoded")[0] == 415
    assert refused(Host="127.0.0.1", has_body=False) is None  # an empty ack


def test_the_page_forbids_framing_and_foreign_scripts() -> None:
    csp = PAGE_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert PAGE_HEADERS["X-Frame-Options"] == "DENY"


def test_control_characters_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    logsafe.install("info")
    forged = "abc\nCRITICAL streams: all patients discharged"
    with caplog.at_level(logging.INFO):
        logging.getLogger("streams.test").info("alert action on %s ignored", forged)
    [record] = [r for r in caplog.records if r.name == "streams.test"]
    assert "\n" not in record.getMessage() and "\\x0a" in record.getMessage()


def test_library_loggers_are_capped_at_info() -> None:
    logsafe.install("debug")
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("faust").getEffectiveLevel() == logging.INFO
    logsafe.install("debug", debug_libraries=True)  # explicitly enabled: left alone
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    logging.getLogger("faust").setLevel(logging.NOTSET)
