"""A local OpenID Connect provider for the tests: its own RSA keys, a discovery document, a
JWKS endpoint, an authorisation endpoint that signs in whoever ``next_claims`` names (no
login form: the tests are the person) and a token endpoint that checks PKCE (S256) as the
specification says. Tokens for the refusal cases are minted directly with :meth:`mint`.

Documented double: no hospital identity provider can run here; what it answers follows
OpenID Connect Discovery 1.0, RFC 7517 (JWKS), RFC 6749 (code grant) and RFC 7636 (PKCE).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Issuer:
    """The provider, serving on 127.0.0.1 from a thread (``start``/``stop``)."""

    def __init__(self, audience: str, client_id: str = "bedside-pages") -> None:
        self.audience, self.client_id = audience, client_id
        self.keys = {"k1": new_key()}  # kid -> key; the JWKS publishes all of them
        self.signing_kid = "k1"
        self.next_claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.jwks_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Issuer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def rotate(self) -> str:
        """A new signing key (the old one still published); returns its kid."""
        kid = f"k{len(self.keys) + 1}"
        self.keys[kid] = new_key()
        self.signing_kid = kid
        return kid

    def mint(
        self,
        claims: dict[str, Any],
        *,
        lifetime_s: float = 300,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        """A signed access token: ``claims`` plus iss, aud, iat, exp (``overrides`` win)."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime_s,
            "sub": "subject-" + secrets.token_hex(4),
            **claims,
            **overrides,
        }
        kid = kid or self.signing_kid
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if path.path == "/.well-known/openid-configuration":
                    self._json(200, {
                        "issuer": issuer.url,
                        "authorization_endpoint": issuer.url + "/authorize",
                        "token_endpoint": issuer.url + "/token",
                        "jwks_uri": issuer.url + "/jwks",
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    })  # fmt: skip
                elif path.path == "/jwks":
                    issuer.jwks_requests += 1
                    keys = [public_jwk(k, kid) for kid, k in issuer.keys.items()]
                    self._json(200, {"keys": keys})
                elif path.path == "/authorize":
                    self._authorize({k: v[0] for k, v in parse_qs(path.query).items()})
                else:
                    self._json(404, {"error": "not_found"})

            def _authorize(self, asked: dict[str, str]) -> None:
                if (
                    asked.get("response_type") != "code"
                    or asked.get("client_id") != issuer.client_id
                    or asked.get("code_challenge_method") != "S256"
                    or not asked.get("code_challenge")
                ):
                    self._json(400, {"error": "invalid_request", "asked": asked})
                    return
                code = secrets.token_urlsafe(16)
                issuer.codes[code] = {**asked, "claims": dict(issuer.next_claims)}
                back = (
                    asked["redirect_uri"]
                    + "?"
                    + urlencode({"code": code, "state": asked.get("state", "")})
                )
                self.send_response(302)
                self.send_header("Location", back)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                issuer.token_requests.append(
                    {**form, "authorization": self.headers.get("Authorization", "")}
                )
                granted = issuer.codes.pop(form.get("code", ""), None)
                if granted is None or form.get("grant_type") != "authorization_code":
                    self._json(400, {"error": "invalid_grant", "error_description": "unknown code"})
                    return
                verifier = form.get("code_verifier", "")
                digest = hashlib.sha256(verifier.encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                if (
                    challenge != granted["code_challenge"]
                    or form.get("redirect_uri") != granted["redirect_uri"]
                ):
                    self._json(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": "PKCE verifier or redirect_uri does not match",
                        },
                    )
                    return
                token = issuer.mint(granted["claims"])
                self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

        return Handler
