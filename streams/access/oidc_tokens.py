"""People signed in by the hospital's identity provider: its JWT access tokens, checked.

A token is taken when its signature verifies against one of the provider's published keys
(JWKS, found by the token's ``kid``; asymmetric algorithms only, so a key can never double as
a shared secret), its ``iss`` is the configured issuer, its ``aud`` holds the configured
audience and it has not expired (``exp`` required; ``nbf`` and ``iat`` honoured, with
``leeway_s`` of clock skew). The user's role and wards come from configurable claims
(``BEDSIDE_OIDC__ROLE_CLAIM``, ``__WARDS_CLAIM``; dotted paths reach nested ones such as
Keycloak's ``realm_access.roles``). A valid token without a Bedside role or ward is refused
with 403, naming the claim: the provider signed the person in, Bedside has no place for them.

Plain code: the keys are handed in (``streams.http.oidc`` fetches them).
"""

from __future__ import annotations

import re
import time
from typing import Any

import jwt

from ..settings import OidcSettings
from .users import USER_NAME, Role, User, token_digest

#: what a provider may sign with: asymmetric only (never "none", never HMAC)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")


class TokenRefused(Exception):
    """A token that does not sign anyone in: 401 (not valid) or 403 (valid, no place here);
    503 while the provider's keys have never been fetched."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class UnknownKey(TokenRefused):
    """Signed with a key id the keys in hand do not have (the provider may have rotated)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__(
            401,
            f"token signed with a key the identity provider does not publish "
            f"(kid {kid!r}); its keys are being fetched again: sign in again",
        )
        self.kid = kid


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts: a JWT (users-file tokens have no dots)."""
    return token.count(".") == 2 and len(token) > 20


def claim(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``claims`` (None when absent)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def as_names(value: Any) -> list[str]:
    """A claim that is one name or a list of names, as a list (anything else: empty)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


class TokenVerifier:
    """Checks the provider's access tokens and says who they sign in."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self.keys: dict[str, jwt.PyJWK] = {}
        self.keys_at: float | None = None  # when the keys were last taken in (monotonic)

    def take_keys(self, jwks: dict[str, Any]) -> int:
        """Use the signing keys of a JWKS document (keys not for signing, or of an algorithm
        not allowed, are left out); returns how many are usable. Raises ValueError when the
        document is not a JWKS."""
        found = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(found, list):
            msg = "not a JWKS document (no keys list)"
            raise ValueError(msg)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in found:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key type this library cannot use: not ours to choose
            if key.algorithm_name in ALGORITHMS or "alg" not in entry:
                keys[str(entry.get("kid", ""))] = key
        self.keys, self.keys_at = keys, time.monotonic()
        return len(keys)

    def user(self, token: str) -> User:
        """The user ``token`` signs in (``expires_at``: its ``exp``); raises TokenRefused
        (UnknownKey when its key id is not among the keys)."""
        if self.keys_at is None:
            raise TokenRefused(503, "the identity provider's keys are not loaded yet: retry")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise TokenRefused(401, f"not a readable token ({error})") from None
        kid = header.get("kid")
        key = self.keys.get(str(kid or ""))
        if key is None:
            raise UnknownKey(kid)
        return self._user(self._claims(token, key), token)

    def _claims(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        settings = self.settings
        algorithms = [key.algorithm_name] if key.algorithm_name in ALGORITHMS else list(ALGORITHMS)
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=algorithms,
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused(401, "token expired: sign in again") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                401, f"token not for this service (aud is not {settings.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(
                401, f"token not from the configured issuer {settings.issuer!r}"
            ) from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused(401, "token not valid yet (nbf/iat in the future)") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRefused(401, f"token lacks a required claim: {error.claim}") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefused(401, "token signed with an algorithm not allowed") from None
        except jwt.InvalidTokenError as error:  # bad signature, malformed
            raise TokenRefused(401, f"token refused: {type(error).__name__}") from None

    def _user(self, claims: dict[str, Any], token: str) -> User:
        settings = self.settings
        granted = [
            Role[settings.roles[name].upper()]
            for name in as_names(claim(claims, settings.role_claim))
            if name in settings.roles
        ]
        if not granted:
            raise TokenRefused(
                403,
                f"no Bedside role in the token's {settings.role_claim!r} "
                f"claim (one of {', '.join(sorted(settings.roles))})",
            )
        wards = as_names(claim(claims, settings.wards_claim))
        if not wards:
            raise TokenRefused(403, f"no ward in the token's {settings.wards_claim!r} claim")
        names = [claim(claims, settings.name_claim), claims.get("sub")]
        name = next((n for n in names if isinstance(n, str) and usable_name(n)), None)
        if name is None:
            raise TokenRefused(
                403,
                f"no usable name in the {settings.name_claim!r} or sub "
                f"claims (letters, digits, . @ _ - and spaces)",
            )
        return User(
            name=name,
            role=max(granted),
            wards=tuple(dict.fromkeys(wards)),
            token_sha256=token_digest(token),
            expires_at=float(claims["exp"]),
        )


def usable_name(name: str) -> bool:
    return 0 < len(name) <= 100 and re.fullmatch(USER_NAME, name) is not None
