"""The users file: roles, wards, hashed tokens, and what a bad file says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.access.users import (
    Directory,
    Role,
    UsersFileError,
    add_user,
    load_directory,
    read_users,
    token_digest,
)


def test_added_users_sign_in_with_their_token_and_the_file_holds_only_its_digest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    alice = add_user(path, "alice", Role.NURSE, ["4B"])
    bob = add_user(path, "bob", Role.PHYSICIAN, ["4B", "5A"])
    text = path.read_text()
    assert alice not in text and bob not in text and token_digest(alice) in text
    assert json.loads(text)["users"][0]["role"] == "nurse"
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    directory = load_directory(path)
    found = directory.find(alice)
    assert found is not None and found.name == "alice" and found.role is Role.NURSE
    assert directory.find(alice + "x") is None and directory.find("") is None
    again = add_user(path, "alice", Role.ADMIN, ["*"])  # replaced: the old token is gone
    directory = load_directory(path)
    assert directory.find(alice) is None
    admin = directory.find(again)
    assert admin is not None and admin.may(Role.PHYSICIAN) and admin.sees("any ward")


def test_roles_are_cumulative_and_wards_bound_what_a_user_sees() -> None:
    directory = Directory(read_users(None).users)
    assert directory.find("anything") is None
    nurse = Role.NURSE
    assert Role.PHYSICIAN.label == "physician" and nurse < Role.PHYSICIAN < Role.ADMIN


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"users": [{"name": "a", "role": "surgeon", "wards": ["x"], "token_sha256": "0" * 64}]},
         "unknown role 'surgeon'"),
        ({"users": [{"name": "a", "role": "nurse", "wards": [], "token_sha256": "0" * 64}]},
         "wards"),
        ({"users": [{"name": "a", "role": "nurse", "wards": ["x"], "token": "plain"}]},
         "token"),
        ({"users": [{"name": "a", "role": "nurse", "wards": ["x"], "token_sha256": "0" * 64},
                    {"name": "a", "role": "admin", "wards": ["x"], "token_sha256": "1" * 64}]},
         "unique"),
    ],
)  # fmt: skip
def test_a_bad_users_file_names_the_problem(
    tmp_path: Path, document: dict[str, object], says: str
) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UsersFileError, match=says):
        load_directory(path)


def test_a_missing_users_file_is_an_error_not_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match="bedside users add"):
        load_directory(tmp_path / "nowhere.json")
