"""The identity provider's access tokens: who they sign in, and every way one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from oidc_issuer import new_key, public_jwk

from streams.access.oidc_tokens import TokenRefused, TokenVerifier, UnknownKey, looks_like_jwt
from streams.access.users import Role
from streams.settings import OidcSettings

ISSUER = "https://login.hospital.example/realms/ward"
AUDIENCE = "bedside-api"
KEY = new_key()
NURSE = {"preferred_username": "alice@hospital.example", "roles": ["nurse"], "wards": ["4B"]}


def verifier(**settings: Any) -> TokenVerifier:
    found = TokenVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE, **settings))
    assert found.take_keys({"keys": [public_jwk(KEY, "k1")]}) == 1
    return found


def token(claims: dict[str, Any], *, key: Any = KEY, kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "s-1", **claims}
    return jwt.encode({**body, **overrides}, key, algorithm="RS256", headers={"kid": kid})


def refused(check: TokenVerifier, text: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as caught:
        check.user(text)
    return caught.value


def test_a_valid_token_signs_in_its_user_with_role_wards_and_expiry() -> None:
    text = token(NURSE)
    user = verifier().user(text)
    assert (user.name, user.role, user.wards) == ("alice@hospital.example", Role.NURSE, ("4B",))
    assert user.expires_at == jwt.decode(text, options={"verify_signature": False})["exp"]
    assert looks_like_jwt(text) and not looks_like_jwt("bsu_" + "x" * 43)


def test_expired_wrong_audience_wrong_issuer_are_each_refused_with_their_reason() -> None:
    check = verifier(leeway_s=0)
    cases = {
        "expired": token(NURSE, exp=int(time.time()) - 5),
        "not for this service": token(NURSE, aud="another-api"),
        "not from the configured issuer": token(NURSE, iss="https://evil.example"),
        "not valid yet": token(NURSE, nbf=int(time.time()) + 120),
        "lacks a required claim: exp": token(NURSE, exp=None),
    }
    for reason, text in cases.items():
        if reason.endswith("exp"):  # a token without exp at all
            body = jwt.decode(text, options={"verify_signature": False})
            body.pop("exp")
            text = jwt.encode(body, KEY, algorithm="RS256", headers={"kid": "k1"})
        answer = refused(check, text)
        assert answer.status == 401 and reason in answer.message, (reason, answer.message)


def test_leeway_takes_a_token_just_expired_on_a_skewed_clock() -> None:
    text = token(NURSE, exp=int(time.time()) - 5)
    assert verifier(leeway_s=30).user(text).name == "alice@hospital.example"


def test_an_unknown_key_id_and_a_forged_signature_are_refused() -> None:
    check = verifier()
    unknown = refused(check, token(NURSE, key=new_key(), kid="k9"))
    assert isinstance(unknown, UnknownKey) and unknown.kid == "k9" and unknown.status == 401
    forged = refused(check, token(NURSE, key=new_key(), kid="k1"))  # known kid, other key
    assert forged.status == 401 and "InvalidSignatureError" in forged.message


def test_none_and_hmac_algorithms_are_never_taken() -> None:
    check = verifier()
    unsigned = jwt.encode({**NURSE, "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60},
                          None, algorithm="none", headers={"kid": "k1"})  # fmt: skip
    assert refused(check, unsigned).status == 401
    # the classic confusion: HS256 "signed" with the provider's public key as the secret
    public = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    body = {**NURSE, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    signed = ".".join(part(p) for p in ({"alg": "HS256", "typ": "JWT", "kid": "k1"}, body))
    mac = hmac.new(public, signed.encode(), hashlib.sha256).digest()
    confused = signed + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert refused(check, confused).status == 401


def part(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_roles_map_to_the_highest_bedside_role_and_nested_claims_are_read() -> None:
    check = verifier(
        role_claim="realm_access.roles",
        roles={"ward-nurse": "nurse", "ward-doctor": "physician"},
        wards_claim="bedside.wards",
    )
    claims = {
        "preferred_username": "bob",
        "realm_access": {"roles": ["offline_access", "ward-nurse", "ward-doctor"]},
        "bedside": {"wards": "general"},
    }
    user = check.user(token(claims))
    assert (user.role, user.wards) == (Role.PHYSICIAN, ("general",))


def test_a_token_without_a_bedside_role_or_ward_is_forbidden_naming_the_claim() -> None:
    check = verifier()
    no_role = refused(check, token({**NURSE, "roles": ["offline_access"]}))
    assert no_role.status == 403 and "'roles'" in no_role.message
    no_ward = refused(check, token({**NURSE, "wards": []}))
    assert no_ward.status == 403 and "'wards'" in no_ward.message


def test_a_name_the_audit_trail_cannot_carry_falls_back_to_sub() -> None:
    user = verifier().user(token({**NURSE, "preferred_username": "<script>"}, sub="s-42"))
    assert user.name == "s-42"
    nameless = refused(verifier(), token({**NURSE, "preferred_username": "<b>"}, sub="x/y"))
    assert nameless.status == 403


def test_no_keys_yet_is_unavailable_and_a_jwks_keeps_only_signing_keys() -> None:
    check = TokenVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE))
    assert refused(check, token(NURSE)).status == 503
    encryption = {**public_jwk(new_key(), "enc"), "use": "enc"}
    assert check.take_keys({"keys": [encryption, public_jwk(KEY, "k1"), {"kty": "nope"}]}) == 1
    with pytest.raises(ValueError, match="not a JWKS"):
        check.take_keys({"issuer": ISSUER})


def test_settings_need_an_audience_and_https_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="AUDIENCE"):
        OidcSettings(issuer=ISSUER)
    with pytest.raises(ValueError, match="https"):
        OidcSettings(issuer="http://login.hospital.example", audience=AUDIENCE)
    assert OidcSettings(issuer="http://127.0.0.1:8080", audience=AUDIENCE).enabled
    assert OidcSettings().pages_client_id is None
    assert OidcSettings(issuer=ISSUER, audience=AUDIENCE).pages_client_id == AUDIENCE
