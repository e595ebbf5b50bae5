"""The named users every integration worker knows (a users file written per test session).

Tokens are fixed here so tests can name who acts; the users file holds only their digests.
"""

from __future__ import annotations

from pathlib import Path

from streams.access.users import Role, User, UsersFile, token_digest

SIGNING_KEY = "integration-signing-key-5f0c2a9e7d41b3c8"

#: name -> (role, wards, bearer token)
USERS: dict[str, tuple[Role, tuple[str, ...], str]] = {
    "nurse-general": (Role.NURSE, ("general",), "tok-nurse-general-0123456789abcdef0123"),
    "nurse-4b": (Role.NURSE, ("4B",), "tok-nurse-4b-0123456789abcdef0123456789"),
    "physician-general": (Role.PHYSICIAN, ("general",), "tok-physician-general-0123456789abcd"),
    "admin-all": (Role.ADMIN, ("*",), "tok-admin-all-0123456789abcdef012345678"),
}
NURSE = USERS["nurse-general"][2]


def write_users(path: Path) -> Path:
    users = [
        User(name=name, role=role, wards=wards, token_sha256=token_digest(token))
        for name, (role, wards, token) in USERS.items()
    ]
    path.write_text(UsersFile(users=users).model_dump_json(indent=2), encoding="utf-8")
    return path
