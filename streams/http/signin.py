"""Who is calling: the signed-in user of a request, and what they may see and do.

Patient data and alarm actions need a named user (``streams.access.users``): a bearer token
in ``Authorization``, never in a URL (where logs, histories and proxies keep it); the users
file is read again when it changes (checked every 5 s), so adding or removing a user needs
no restart. A patient is visible to users of its ward (the patient settings file's ``ward``, else
``BEDSIDE_WEB__DEFAULT_WARD``). ``BEDSIDE_WEB__AUTH=none`` lets anyone in, as an admin of
every ward named ``anyone.auth-none``: development only, logged as a warning at start.
With ``BEDSIDE_OIDC__ISSUER`` set, people may also sign in through the hospital's identity
provider: a bearer JWT is checked by ``streams.access.oidc_tokens`` (a refusal says why), and
an open live stream ends when its token expires (the page signs in again).
The ingest gateway keeps its own device credentials (``BEDSIDE_WEB__TOKEN``, Nightscout
secrets): they read nothing.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faust.web import Request, View

from ..access.oidc_tokens import TokenRefused, TokenVerifier, UnknownKey, looks_like_jwt
from ..access.users import ALL_WARDS, Directory, Role, User, UsersFileError, load_directory
from ..patients import PatientDirectory
from ..settings import Settings

log = logging.getLogger(__name__)

ANYONE = User(name="anyone.auth-none", role=Role.ADMIN, wards=(ALL_WARDS,), token_sha256="0" * 64)

#: Evidence a model alert carries that only physicians see (what drove the model's score).
MODEL_DETAILS = ("drivers",)
RELOAD_CHECK_S = 5.0  # how often the users file is looked at for changes
DRIVEN_BY = re.compile(r" Driven by: [^.]*\.")


class Denied(Exception):
    """A request the caller may not make: 401 (who are you) or 403 (not yours)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict[str, str]:
        error = {401: "unauthorized", 403: "forbidden"}.get(self.status, "unavailable")
        return {"error": error, "detail": self.message}


class Access:
    def __init__(self, settings: Settings, patients: PatientDirectory | None = None) -> None:
        web = settings.web
        self.open = web.auth == "none"
        self.directory = Directory([]) if self.open else load_directory(web.users_file)
        self.users_file = None if self.open else web.users_file
        self._loaded = self.users_file.stat().st_mtime_ns if self.users_file else 0
        self._checked = time.monotonic()
        self.patients = patients or PatientDirectory.from_settings(settings.stream)
        #: the identity provider's tokens (None: users-file tokens only)
        self.tokens = TokenVerifier(settings.oidc) if settings.oidc.enabled else None
        self.unknown_key: Callable[[], None] = lambda: None  # fetch the provider's keys again
        self.wards = self.patients.wards()
        self.default_ward = web.default_ward
        if self.open:
            log.warning(
                "BEDSIDE_WEB__AUTH=none: anyone who reaches this server reads every patient "
                "and acts on every alarm. Development only."
            )
        elif not self.directory.users and self.tokens is None:
            log.warning(
                "no users (BEDSIDE_WEB__USERS_FILE): patient data and alarm actions are "
                "refused until users are added with `bedside users add`"
            )

    def caller(self, request: Request) -> User:
        """The signed-in user; raises Denied(401) without valid credentials."""
        if self.open:
            return ANYONE
        self._reload()
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if self.tokens is not None and looks_like_jwt(token):
            try:
                return self.tokens.user(token)
            except UnknownKey as unknown:
                self.unknown_key()
                raise Denied(401, unknown.message) from None
            except TokenRefused as refused:
                raise Denied(refused.status, refused.message) from None
        user = self.directory.find(token)
        if user is None:
            also = " or the identity provider's" if self.tokens is not None else ""
            raise Denied(
                401, f"sign in: a user's bearer token (bedside users add){also} is required"
            )
        return user

    def _reload(self) -> None:
        """Take in a changed users file (users added or removed) without a restart; a file
        that became unusable keeps the users it had, loudly."""
        now = time.monotonic()
        if self.users_file is None or now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        try:
            changed = self.users_file.stat().st_mtime_ns
            if changed != self._loaded:
                self.directory, self._loaded = load_directory(self.users_file), changed
                log.info("users file reloaded: %d users", len(self.directory.users))
        except FileNotFoundError:
            if self.directory.users:  # deleted: nobody is a user any more
                log.error(
                    "users file %s is gone: no users now; patient data and alarm actions "
                    "are refused until it is back",
                    self.users_file,
                )
            self.directory, self._loaded = Directory([]), 0
        except (OSError, UsersFileError) as error:
            log.error("users file not reloaded, the previous users stay: %s", error)

    def still(self, user: User) -> bool:
        """Whether ``user`` is still a user, with the same role and wards (open streams
        end when not: the page signs in again and is filtered by what the user is now)."""
        if self.open:
            return True
        if user.expires_at is not None:  # the identity provider's: valid until it expires
            return time.time() < user.expires_at
        self._reload()
        return self.directory.by_digest.get(user.token_sha256) == user

    def ward_choices(self, user: User) -> list[str]:
        """The wards a user may narrow the ward view to."""
        if ALL_WARDS in user.wards:
            return sorted({*self.wards.values(), self.default_ward})
        return list(user.wards)

    def ward_filter(self, request: Request, user: User) -> str | None:
        """The ward asked for (``?ward=``), one the user sees; None for all of theirs."""
        ward = request.query.get("ward") or None
        if ward is not None and not user.sees(ward):
            raise Denied(403, f"ward {ward} is not one of yours ({', '.join(user.wards)})")
        return ward

    def ward_of(self, patient_id: str) -> str:
        return self.wards.get(patient_id, self.default_ward)

    def sees(self, user: User, patient_id: str) -> bool:
        return user.sees(self.ward_of(patient_id))

    def patient(self, request: Request, patient_id: str) -> User:
        """The caller, if ``patient_id`` is in their wards; else Denied."""
        user = self.caller(request)
        if not self.sees(user, patient_id):
            raise Denied(403, f"patient is not in your wards ({', '.join(user.wards)})")
        return user

    def role(self, request: Request, role: Role) -> User:
        user = self.caller(request)
        if not user.may(role):
            raise Denied(403, f"a {role.label} may do this; you are a {user.role.label}")
        return user

    def named(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` (a row, an event) with the sender's id of its pseudonymised patient
        (``display_id``), for a caller already allowed to see the patient."""
        if self.patients.pseudonyms is None:
            return item
        return {**item, "display_id": self.patients.display(item["patient_id"])}

    def shown(self, user: User, event: dict[str, Any]) -> dict[str, Any]:
        """An alert event as ``user`` may see it (model details for physicians and up)."""
        event = self.named(event)
        if user.may(Role.PHYSICIAN) or not any(
            k in event.get("evidence", {}) for k in MODEL_DETAILS
        ):
            return event
        evidence = {k: v for k, v in event["evidence"].items() if k not in MODEL_DETAILS}
        return {**event, "evidence": evidence, "reason": DRIVEN_BY.sub("", event["reason"])}


Handler = Callable[..., Awaitable[Any]]


def guarded(handler: Handler) -> Handler:
    """A view method whose Denied becomes its 401/403 answer."""

    @functools.wraps(handler)
    async def answer(view: View, request: Request, *args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(view, request, *args, **kwargs)
        except Denied as denied:
            headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else None
            if denied.status == 503:
                headers = {"Retry-After": "10"}
            return view.json(denied.body(), status=denied.status, headers=headers)

    return answer
