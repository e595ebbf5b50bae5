"""The topics' published contracts (docs/schemas/) are the code's, versioned, and change only
additively within a major version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from streams.contracts import CONTRACTS, contract_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
NOTES = {"description", "title", "examples"}


def published(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def test_the_published_schemas_are_the_code_s() -> None:
    """``bedside schemas`` regenerates docs/schemas/ after a change to an event's model."""
    current = contract_schemas()
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == set(
        current
    )
    for stem, schema in current.items():
        assert published(SCHEMAS / f"{stem}.schema.json") == schema, stem
        Draft202012Validator.check_schema(schema)


def version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def without_notes(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: without_notes(v) for k, v in schema.items() if k not in NOTES}
    if isinstance(schema, list):
        return [without_notes(v) for v in schema]
    return schema


def breaking(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` a consumer written against ``old`` could not read: a property removed
    or changed, a new required property, closed to properties it allowed, a definition
    changed."""
    found = []
    for name, spec in old.get("properties", {}).items():
        if name not in new.get("properties", {}):
            found.append(f"property {name} removed")
        elif without_notes(spec) != without_notes(new["properties"][name]):
            found.append(f"property {name} changed")
    for name in set(new.get("required", ())) - set(old.get("required", ())):
        found.append(f"property {name} now required")
    if old.get("additionalProperties", True) and new.get("additionalProperties") is False:
        found.append("no longer open to other properties")
    for name, spec in old.get("$defs", {}).items():
        if without_notes(spec) != without_notes(new.get("$defs", {}).get(name)):
            found.extend(f"{name}: {p}" for p in breaking(spec, new.get("$defs", {})[name]))
    return found


FROZEN = sorted(SCHEMAS.glob("v*/*.schema.json"))


@pytest.mark.parametrize("frozen", FROZEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_published_version_changes_only_with_a_new_one_and_additively(frozen: Path) -> None:
    stem = frozen.name.removesuffix(".schema.json")
    old, new = published(frozen), contract_schemas()[stem]
    then, now = version(old["x-schema-version"]), version(new["x-schema-version"])
    assert frozen.parent.name == f"v{then[0]}.{then[1]}"
    assert now >= then
    if now == then:  # a change needs a new version (and a new frozen copy)
        assert new == old, f"{stem} changed: raise its minor (additive) or major version"
    elif now[0] == then[0]:
        assert not breaking(old, new), (stem, breaking(old, new))


def test_every_versioned_contract_has_its_current_version_frozen() -> None:
    for stem, (_, _, _, current) in CONTRACTS.items():
        if current is not None:
            assert (SCHEMAS / f"v{current}" / f"{stem}.schema.json").exists(), (stem, current)


def test_the_additive_rule_itself() -> None:
    old = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert not breaking(old, {**old, "properties": {**old["properties"], "b": {"type": "number"}}})
    assert breaking(old, {"properties": {}, "required": []}) == ["property a removed"]
    assert breaking(old, {"properties": {"a": {"type": "number"}}, "required": ["a"]})
    assert breaking(
        old, {**old, "properties": {**old["properties"], "b": {}}, "required": ["a", "b"]}
    )
