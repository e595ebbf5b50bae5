"""People signed in by the hospital's identity provider, on a running worker.

A local OpenID Connect provider (``tests/support/oidc_issuer.py``: its own keys, discovery
and JWKS endpoints, PKCE-checking code grant) stands in for the hospital's. Its tokens open
exactly their ward's patients; expired, wrong-audience, wrong-issuer, unknown-key, role-less
tokens are each refused with their reason; the users file keeps working beside it; a rotated
key is fetched on its first use; a live stream ends when its token expires; an action names
the provider's user; the pages' code exchange checks PKCE; and in Chromium a person clicks
"Sign in with your hospital account" and lands on the ward view signed in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import queue
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from care_team import USERS
from event_stream import event_stream
from oidc_issuer import Issuer, new_key
from stream_helpers import produce
from stream_helpers import recent_cgm as cgm

from streams.settings import Settings

RUN = uuid.uuid4().hex[:6]
IN_4B, IN_GENERAL = f"oidc-4b-{RUN}", f"oidc-gen-{RUN}"
AUDIENCE = "bedside-api"
NURSE_4B = {"preferred_username": "alice.nurse", "roles": ["nurse"], "wards": ["4B"]}
BROWSER = Path(__file__).parents[1] / "browser"


def call(
    worker: Any, method: str, path: str, token: str | None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(f"{worker.url}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    provider = Issuer(AUDIENCE).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def oidc_worker(
    spawn_worker: Callable[..., Any],
    stack_settings: Settings,
    issuer: Issuer,
    tmp_path_factory: Any,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A worker that takes the provider's tokens (and the session's users file), with one
    low-glucose alarm in each ward; the alarms by patient."""
    settings_file: Path = tmp_path_factory.mktemp("oidc") / "patients.json"
    settings_file.write_text(json.dumps({IN_4B: {"ward": "4B"}}))
    worker = spawn_worker(
        BEDSIDE_SCORING__MODELS="[]",
        BEDSIDE_STREAM__PATIENT_SETTINGS_FILE=str(settings_file),
        BEDSIDE_OIDC__ISSUER=issuer.url,
        BEDSIDE_OIDC__AUDIENCE=AUDIENCE,
        BEDSIDE_OIDC__CLIENT_ID=issuer.client_id,
        BEDSIDE_OIDC__LEEWAY_S="0",
    )
    worker.wait_ready()
    readings = [cgm(p, 15 - 5 * i, v) for p in (IN_4B, IN_GENERAL) for i, v in
                enumerate([110, 66, 62, 60])]  # fmt: skip
    asyncio.run(produce(stack_settings, readings))
    admin = USERS["admin-all"][2]
    deadline, alerts = time.monotonic() + 60, {}
    while len(alerts) < 2:
        assert time.monotonic() < deadline, "the alarms never reached the alert view"
        status, body = call(worker, "GET", "/v1/alerts", admin)
        assert status == 200
        alerts = {
            a["patient_id"]: a for a in body["open"] if a["patient_id"] in (IN_4B, IN_GENERAL)
        }
        time.sleep(0.3)
    return worker, alerts


def test_a_providers_token_opens_its_wards_patients_and_no_others(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer
) -> None:
    worker, _ = oidc_worker
    token = issuer.mint(NURSE_4B)
    status, me = call(worker, "GET", "/v1/me", token)
    assert status == 200 and (me["name"], me["role"], me["wards"]) == (
        "alice.nurse",
        "nurse",
        ["4B"],
    )
    status, body = call(worker, "GET", "/v1/alerts", token)
    assert {a["patient_id"] for a in body["open"]} & {IN_4B, IN_GENERAL} == {IN_4B}
    assert call(worker, "GET", f"/v1/patients/{IN_4B}/window", token)[0] == 200
    status, body = call(worker, "GET", f"/v1/patients/{IN_GENERAL}/window", token)
    assert status == 403 and "4B" in body["detail"]  # the ward claim does not match
    # the users file's people still sign in beside the provider's
    assert call(worker, "GET", "/v1/me", USERS["nurse-general"][2])[1]["name"] == "nurse-general"


def test_each_bad_token_is_refused_with_its_reason(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer
) -> None:
    worker, _ = oidc_worker
    cases = {
        "expired": (401, issuer.mint(NURSE_4B, exp=int(time.time()) - 10)),
        "not for this service": (401, issuer.mint(NURSE_4B, aud="another-api")),
        "not from the configured issuer": (401, issuer.mint(NURSE_4B, iss="https://evil.example")),
        "does not publish": (401, issuer.mint(NURSE_4B, key=new_key(), kid="stranger")),
        "InvalidSignatureError": (401, issuer.mint(NURSE_4B, key=new_key(), kid="k1")),
        "no Bedside role": (403, issuer.mint({**NURSE_4B, "roles": ["offline_access"]})),
        "no ward": (403, issuer.mint({**NURSE_4B, "wards": []})),
    }
    for reason, (expected, token) in cases.items():
        status, body = call(worker, "GET", "/v1/alerts", token)
        assert (status, reason in body.get("detail", "")) == (expected, True), (reason, body)


def test_a_rotated_key_is_fetched_on_its_first_use(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer
) -> None:
    worker, _ = oidc_worker
    fetched = issuer.jwks_requests
    issuer.rotate()
    token = issuer.mint(NURSE_4B)
    deadline, status = time.monotonic() + 30, 0
    while status != 200:
        assert time.monotonic() < deadline, "the new key was never fetched"
        status, body = call(worker, "GET", "/v1/me", token)
        assert status in (200, 401), body
        time.sleep(0.5)
    assert issuer.jwks_requests > fetched


def test_a_live_stream_ends_when_its_token_expires_and_an_action_names_the_user(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer
) -> None:
    worker, alerts = oidc_worker
    short = issuer.mint(NURSE_4B, lifetime_s=6)
    with event_stream(worker.web_port, "/v1/alerts/stream", short) as lines:
        # acting with a provider's token: the transition names the provider's user
        alert = alerts[IN_4B]
        status, _ = call(worker, "POST", f"/v1/alerts/{alert['alert_id']}/ack", short, {})
        assert status == 202
        started, seen, ended = time.monotonic(), [], None
        while ended is None and time.monotonic() - started < 30:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith(b"event: signout"):
                ended = time.monotonic() - started
    acked = [json.loads(line[6:]) for line in seen if line.startswith(b"data: {")]
    assert any(e.get("by") == "alice.nurse" and e["alert_id"] == alert["alert_id"] for e in acked)
    assert ended is not None and ended < 20, seen  # 6 s of token, checked every 5 s


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorised_code(worker: Any, issuer: Issuer, challenge: str) -> str:
    """What the browser does at the provider: ask, be sent back with a code."""
    status, config = call(worker, "GET", "/v1/signin/config", None)
    assert status == 200 and config["oidc"]["client_id"] == issuer.client_id
    ask = urlencode({
        "response_type": "code", "client_id": config["oidc"]["client_id"],
        "redirect_uri": f"{worker.url}/ui/signin", "scope": config["oidc"]["scope"],
        "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
    })  # fmt: skip
    opener = urllib.request.build_opener(NoRedirect())
    try:
        opener.open(f"{config['oidc']['authorization_endpoint']}?{ask}", timeout=10)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    assert location.startswith(f"{worker.url}/ui/signin?")
    return parse_qs(urlsplit(location).query)["code"][0]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_the_pages_code_exchange_checks_pkce_and_the_redirect(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer
) -> None:
    worker, _ = oidc_worker
    back = f"{worker.url}/ui/signin"
    issuer.next_claims = NURSE_4B
    verifier, challenge = pkce()
    code = authorised_code(worker, issuer, challenge)
    asked = {"code": code, "code_verifier": verifier, "redirect_uri": back}
    status, body = call(worker, "POST", "/v1/signin/oidc", None, asked)
    assert status == 200 and body["user"] == {
        "name": "alice.nurse",
        "role": "nurse",
        "wards": ["4B"],
    }
    assert call(worker, "GET", "/v1/me", body["access_token"])[0] == 200
    # another verifier than the challenge's: the provider refuses, Bedside says so
    code = authorised_code(worker, issuer, challenge)
    status, body = call(worker, "POST", "/v1/signin/oidc", None, {**asked, "code": code,
                        "code_verifier": pkce()[0]})  # fmt: skip
    assert status == 502 and "PKCE" in body["detail"]
    # the code may only come back to this server's sign-in page
    status, body = call(worker, "POST", "/v1/signin/oidc", None,
                        {**asked, "redirect_uri": "https://evil.example/ui/signin"})  # fmt: skip
    assert status == 400 and "redirect_uri" in body["detail"]
    status, body = call(worker, "POST", "/v1/signin/oidc", None, {"code": "x"})
    assert status == 400 and "code_verifier" in body["detail"]
    # signed in at the provider, but with no role here: refused, naming the claim
    issuer.next_claims = {**NURSE_4B, "roles": []}
    code = authorised_code(worker, issuer, challenge)
    status, body = call(worker, "POST", "/v1/signin/oidc", None, {**asked, "code": code})
    assert status == 403 and "'roles'" in body["detail"]


def test_a_person_signs_in_through_the_provider_in_chromium(
    oidc_worker: tuple[Any, dict[str, dict[str, Any]]], issuer: Issuer, browser_ready: None
) -> None:
    worker, _ = oidc_worker
    issuer.next_claims = {**NURSE_4B, "preferred_username": "carol.nurse"}
    page = subprocess.run(
        ["node", str(BROWSER / "provider_sign_in.mjs"), f"{worker.url}/ui"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    result = json.loads(page.stdout.strip().splitlines()[-1])
    assert result["ok"], (result, page.stderr[-2000:])
    assert result["who"].startswith("carol.nurse · nurse · 4B")
    visited = [urlsplit(u)._replace(query="").geturl() for u in result["visited"]]
    assert visited == [  # to the provider and back, through the sign-in page
        f"{worker.url}/ui",
        f"{issuer.url}/authorize",
        f"{worker.url}/ui/signin",
        f"{worker.url}/ui",
    ], result["visited"]
    assert result["address"].endswith("/ui") and "code=" not in result["address"]
    assert result["signinHidden"]
    assert IN_4B in result["rows"] and IN_GENERAL not in result["rows"]
