"""The docs a user reads: a short README that points at every page, a configuration reference
in step with the settings (every setting, no other, each default as the code has it) and a
topics page naming every topic."""

from __future__ import annotations

import enum
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streams.settings import Settings, env_var, get_settings, iter_setting_env_vars

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ROW = re.compile(r"^\| `(BEDSIDE_[A-Z0-9_]+)` \| (.*?) \| (.*) \|$")


def defaults(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update(defaults(annotation, (*prefix, name)))
        else:
            found[env_var(*prefix, name)] = field.get_default(call_default_factory=True)
    return found


def written(value: Any) -> str | None:
    """A default as the reference writes it, or None where it is not a plain value."""
    if value is None:
        return "–"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float, str)):
        return f"`{value}`"
    if isinstance(value, (list, dict, tuple)):
        return f"`{json.dumps(value, separators=(',', ':'))}`"
    return None


def reference_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if match := ROW.match(line):
            rows[match[1]] = (match[2], match[3])
    return rows


def test_the_configuration_reference_has_every_setting_and_no_other() -> None:
    rows = reference_rows()
    assert set(rows) == set(iter_setting_env_vars())


def test_each_default_in_the_reference_is_the_code_s() -> None:
    rows, wrong = reference_rows(), []
    for name, value in defaults().items():
        shown = rows[name][0]
        expected = written(value)
        if expected is None or shown.startswith("– ("):  # e.g. "– (random per process)"
            continue
        if shown.replace(", ", ",").replace(": ", ":") != expected:
            wrong.append((name, shown, expected))
    assert not wrong


def test_every_topic_is_on_the_topics_page() -> None:
    text = (DOCS / "topics.md").read_text()
    assert all(f"| `{topic}` |" in text for topic in get_settings().topics.all)


def test_the_readme_is_short_and_every_page_it_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = set(re.findall(r"\]\(([^)#]+)\)", readme))
    assert {f"docs/{p.name}" for p in DOCS.glob("*.md")} <= linked  # every page reachable
    for target in linked:
        assert (ROOT / target).exists(), target


def test_links_between_the_docs_resolve() -> None:
    for page in [*DOCS.glob("*.md"), ROOT / "SECURITY.md", ROOT / "CHANGELOG.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page.name, target)


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_anchors_name_a_heading_of_their_page() -> None:
    pages = {p.name: p.read_text() for p in DOCS.glob("*.md")}
    headings = {
        name: {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
        for name, text in pages.items()
    }
    for name, text in pages.items():
        for target, anchor in re.findall(r"\]\(([\w.-]*\.md)?#([^)]+)\)", text):
            assert anchor in headings[target or name], (name, target, anchor)
