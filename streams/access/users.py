"""Named users of the care-team page and API, from a users file (``BEDSIDE_WEB__USERS_FILE``).

    {"users": [{"name": "alice", "role": "nurse", "wards": ["4B"],
                "token_sha256": "<hex SHA-256 of her bearer token>"}]}

Roles are cumulative: ``nurse`` sees the patients of its wards and acknowledges or snoozes
their alarms; ``physician`` also sees model details (the drivers of a model's alert);
``admin`` also reads settings (the users list). ``"*"`` as a ward means every ward. Tokens are
random (``bedside users add`` makes 256-bit ones), so a plain SHA-256 is their safe digest
(no slow KDF needed, unlike passwords); the file never holds a token itself.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import IntEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from ..config_files import read_json_file

ALL_WARDS = "*"
USER_NAME = r"^[\w.@ -]+$"  # what the audit trail and the pages carry as a user's name


class Role(IntEnum):
    """What a user may do; each role may do all the ones before it."""

    NURSE = 1
    PHYSICIAN = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=USER_NAME)
    role: Role
    wards: tuple[str, ...] = Field(min_length=1)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    #: when the sign-in ends (epoch seconds): an identity provider's token; never in the file
    expires_at: float | None = Field(None, exclude=True, repr=False)

    @field_validator("role", mode="before")
    @classmethod
    def _role_by_name(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return Role[value.upper()]
            except KeyError:
                names = ", ".join(r.label for r in Role)
                msg = f"unknown role {value!r} (one of {names})"
                raise ValueError(msg) from None
        return value

    @field_serializer("role")
    def _role_name(self, role: Role) -> str:
        return role.label

    def sees(self, ward: str) -> bool:
        return ALL_WARDS in self.wards or ward in self.wards

    def may(self, role: Role) -> bool:
        return self.role >= role

    def public(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role.label, "wards": list(self.wards)}


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[User] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique(cls, users: list[User]) -> list[User]:
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            msg = "user names must be unique"
            raise ValueError(msg)
        if len({u.token_sha256 for u in users}) != len(users):
            msg = "two users share a token"
            raise ValueError(msg)
        return users


class UsersFileError(ValueError):
    """The users file cannot be used; the message says where and why."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "bsu_" + secrets.token_urlsafe(32)


class Directory:
    """The users of a worker, found by the digest of their bearer token."""

    def __init__(self, users: list[User]) -> None:
        self.by_digest = {u.token_sha256: u for u in users}
        self.users = users

    def find(self, token: str) -> User | None:
        # a dict lookup on the digest: comparing digests leaks nothing about the token
        return self.by_digest.get(token_digest(token)) if token else None


def read_users(path: Path | None) -> UsersFile:
    if path is None or not path.exists():
        return UsersFile()
    return read_json_file(path, UsersFile.model_validate_json, "users file", UsersFileError)


def load_directory(path: Path | None) -> Directory:
    """The users of ``path`` (none when it is not set); raises UsersFileError."""
    if path is not None and not path.exists():
        msg = f"users file {path} does not exist (create users with `bedside users add`)"
        raise UsersFileError(msg)
    return Directory(read_users(path).users)


def add_user(path: Path, name: str, role: Role, wards: list[str]) -> str:
    """Add (or replace) ``name`` in the users file; returns the new token, shown once."""
    token = new_token()
    current = read_users(path)
    user = User(name=name, role=role, wards=tuple(wards), token_sha256=token_digest(token))
    users = [u for u in current.users if u.name != name] + [user]
    document = UsersFile(users=users).model_dump_json(indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(document + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)
    return token
