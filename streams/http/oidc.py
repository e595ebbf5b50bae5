"""Sign-in through the hospital's identity provider (OpenID Connect), when configured.

- The provider's discovery document (``{issuer}/.well-known/openid-configuration``) names its
  endpoints and keys; the keys (JWKS) are fetched at start, every ``keys_refresh_s`` and when
  a token names a key id not in hand (a rotation; at most every ``UNKNOWN_KEY_WAIT_S``). A
  provider that does not answer keeps the keys already fetched, loudly.
- ``GET /v1/signin/config`` (public): how the pages sign people in: the provider's
  authorisation endpoint, client id and scope, or ``{"oidc": null}`` (users-file tokens).
- ``POST /v1/signin/oidc`` ``{"code", "code_verifier", "redirect_uri"}``: the pages'
  authorisation-code exchange (PKCE: the verifier never left the browser until now). Bedside
  asks the provider's token endpoint for the tokens (with the client secret where the provider
  wants one), checks the access token as the API will and answers it with the user it signs
  in, or says why not (401/403 with the reason, 502 when the provider refuses the code).
- ``GET /ui/signin``: the page the provider sends the browser back to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..access.oidc_tokens import TokenRefused, TokenVerifier
from ..settings import OidcSettings, WebSettings
from .guard import PAGE_HEADERS, refusal

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0
RETRY_S = 10.0  # a provider that did not answer is asked again after this
UNKNOWN_KEY_WAIT_S = 10.0  # an unknown key id fetches the keys at most this often
SIGNIN_PATH = "/ui/signin"
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class ProviderError(Exception):
    """The identity provider did not answer as OpenID Connect says it must."""


class CodeExchange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=4096)
    code_verifier: str = Field(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")
    redirect_uri: str = Field(min_length=1, max_length=2048)


def secure_url(url: object) -> bool:
    """https, or http on loopback (a provider on this machine, for tests)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    return parts.scheme == "https" or (parts.scheme == "http" and loopback)


class IdentityProvider:
    """The configured provider: its endpoints, its keys (in ``verifier``), the code exchange."""

    def __init__(self, settings: OidcSettings, verifier: TokenVerifier) -> None:
        self.settings, self.verifier = settings, verifier
        self.discovery: dict[str, Any] | None = None
        self.failing_since: float | None = None  # wall clock of the first failed fetch
        self._asked = -UNKNOWN_KEY_WAIT_S  # monotonic time of the last fetch of the keys
        self._pending: asyncio.Task[bool] | None = None

    async def _get_json(self, session: aiohttp.ClientSession, url: str) -> Any:
        async with session.get(url) as answer:
            if answer.status != 200:
                msg = f"{url} answered {answer.status}"
                raise ProviderError(msg)
            return await answer.json(content_type=None)

    async def _discover(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        issuer = str(self.settings.issuer)
        found = await self._get_json(
            session, issuer.rstrip("/") + "/.well-known/openid-configuration"
        )
        if not isinstance(found, dict) or found.get("issuer") != issuer:
            msg = f"the discovery document names another issuer than {issuer!r}"
            raise ProviderError(msg)
        for name in ENDPOINTS:
            if not secure_url(found.get(name)):
                msg = f"the discovery document's {name} is missing or not https"
                raise ProviderError(msg)
        return found

    async def refresh(self) -> bool:
        """Fetch the discovery document (once) and the keys; False (logged) when the
        provider did not answer as it must: the keys already in hand stay."""
        self._asked = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                discovery = self.discovery or await self._discover(session)
                count = self.verifier.take_keys(
                    await self._get_json(session, discovery["jwks_uri"])
                )
        except (aiohttp.ClientError, TimeoutError, ProviderError, ValueError) as error:
            self.failing_since = self.failing_since or time.time()
            log.error(
                "identity provider %s not usable (%s): people it signs in are refused "
                "until it answers; users-file sign-in still works",
                self.settings.issuer,
                error or type(error).__name__,
            )
            return False
        self.discovery, self.failing_since = discovery, None
        log.info("identity provider %s: %d signing keys", self.settings.issuer, count)
        return True

    def refresh_soon(self) -> None:
        """Fetch the keys again now (a token named an unknown key id), unless that was
        done in the last ``UNKNOWN_KEY_WAIT_S`` or a fetch is under way."""
        if self._pending is not None and not self._pending.done():
            return
        if time.monotonic() - self._asked < UNKNOWN_KEY_WAIT_S:
            return
        self._pending = asyncio.get_running_loop().create_task(self.refresh())

    async def keep_fresh(self) -> None:
        """Fetch the keys every ``keys_refresh_s`` (every ``RETRY_S`` while failing)."""
        while True:
            try:
                ok = await self.refresh()
            except Exception:  # a provider's odd answer never stops the worker: logged, retried
                log.exception("identity provider keys not refreshed")
                ok = False
            await asyncio.sleep(self.settings.keys_refresh_s if ok else RETRY_S)

    def pages_config(self) -> dict[str, Any] | None:
        if self.discovery is None:
            return None
        return {
            "issuer": self.settings.issuer,
            "authorization_endpoint": self.discovery["authorization_endpoint"],
            "client_id": self.settings.pages_client_id,
            "scope": self.settings.scope,
        }

    async def exchange(self, asked: CodeExchange) -> dict[str, Any]:
        """The provider's tokens for an authorisation code; raises ProviderError."""
        if self.discovery is None:
            msg = "the identity provider has not answered yet"
            raise ProviderError(msg)
        form = {
            "grant_type": "authorization_code",
            "code": asked.code,
            "redirect_uri": asked.redirect_uri,
            "code_verifier": asked.code_verifier,
            "client_id": self.settings.pages_client_id or "",
        }
        secret = self.settings.client_secret
        auth = (
            aiohttp.BasicAuth(self.settings.pages_client_id or "", secret.get_secret_value())
            if secret is not None
            else None
        )
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(self.discovery["token_endpoint"], data=form, auth=auth) as answer,
        ):
            body = await answer.json(content_type=None)
        if answer.status != 200 or not isinstance(body, dict) or "access_token" not in body:
            said = (
                (body.get("error_description") or body.get("error"))
                if isinstance(body, dict)
                else None
            )
            said = said or "no reason"
            msg = f"the identity provider refused the sign-in ({answer.status}: {said})"
            raise ProviderError(msg)
        return body


def redirect_allowed(uri: str, web: WebSettings) -> bool:
    """The code came back to this server's sign-in page (never anywhere else)."""
    parts = urlsplit(uri)
    return (
        parts.scheme in ("http", "https")
        and (parts.hostname or "").lower() in web.hosts
        and parts.path == SIGNIN_PATH
        and not parts.query
        and not parts.fragment
    )


def register(
    app: faust.App, provider: IdentityProvider | None, web: WebSettings, signin_page: str
) -> None:
    """The sign-in routes (``provider``: None when no identity provider is configured)."""

    @app.page("/v1/signin/config")
    class SigninConfig(View):
        async def get(self, request: Request) -> Response:
            if provider is None:
                return self.json({"oidc": None})
            config = provider.pages_config()
            if config is None:
                return self.json(
                    {
                        "error": "unavailable",
                        "detail": "the identity provider has not answered yet",
                    },
                    status=503,
                    headers={"Retry-After": "10"},
                )
            return self.json({"oidc": config})

    @app.page("/v1/signin/oidc")
    class SigninExchange(View):
        async def post(self, request: Request) -> Response:
            raw = await request.read()
            refused = refusal(request, web, has_body=True)
            if refused is not None:
                return self.json({"error": "refused", "detail": refused[1]}, status=refused[0])
            if provider is None:
                return self.json(
                    {"error": "not_found", "detail": "no identity provider is configured"},
                    status=404,
                )
            try:
                asked = CodeExchange.model_validate_json(raw)
            except ValidationError as error:
                reasons = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
                )
                return self.json({"error": "invalid", "detail": reasons}, status=400)
            if not redirect_allowed(asked.redirect_uri, web):
                return self.json(
                    {
                        "error": "invalid",
                        "detail": f"redirect_uri must be this server's {SIGNIN_PATH}",
                    },
                    status=400,
                )
            try:
                tokens = await provider.exchange(asked)
                user = provider.verifier.user(str(tokens["access_token"]))
            except (ProviderError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                log.warning("sign-in refused by the identity provider: %s", error)
                return self.json({"error": "provider", "detail": str(error)}, status=502)
            except TokenRefused as refused_token:
                return self.json(
                    {"error": "refused", "detail": refused_token.message},
                    status=refused_token.status,
                )
            return self.json(
                {
                    "access_token": tokens["access_token"],
                    "token_type": "Bearer",
                    "expires_at": user.expires_at,
                    "user": user.public(),
                },
                headers={"Cache-Control": "no-store"},
            )

    @app.page(SIGNIN_PATH)
    class SigninPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(signin_page, headers=PAGE_HEADERS)

    if provider is not None:

        @app.task  # type: ignore[untyped-decorator]
        async def identity_provider_keys() -> None:
            await provider.keep_fresh()
