"""The docs a user reads: a short README that points at every page, a configuration reference
generated from the settings (every setting, no other, each default as the code has it) and a
topics page naming every topic."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from streams.cli import main
from streams.settings import (
    REFERENCE_END,
    REFERENCE_START,
    get_settings,
    iter_setting_env_vars,
    reference_table,
    setting_reference,
    with_reference,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ROW = re.compile(r"^\| `(BEDSIDE_[A-Z0-9_]+)` \| (.*?) \| (.*) \|$")


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    """docs/configuration.md carries the settings' own table (``bedside settings --write``):
    every setting and no other, each with the code's default and description."""
    page = (DOCS / "configuration.md").read_text()
    assert with_reference(page) == page, "run: bedside settings --write docs/configuration.md"
    rows = [ROW.match(line) for line in page.splitlines()]
    assert [m[1] for m in rows if m] == iter_setting_env_vars()


def test_the_settings_command_prints_and_writes_the_reference(tmp_path: Path) -> None:
    printed = CliRunner().invoke(main, ["settings"])
    assert printed.exit_code == 0 and printed.output == reference_table()
    assert "| `BEDSIDE_KAFKA__BOOTSTRAP` | `127.0.0.1:9092` |" in printed.output
    stale = tmp_path / "configuration.md"
    stale.write_text(
        f"# Title\n\n{REFERENCE_START} ... -->\n| old | table |\n{REFERENCE_END}\nEnd.\n"
    )
    written = CliRunner().invoke(main, ["settings", "--write", str(stale)])
    assert written.exit_code == 0, written.output
    text = stale.read_text()
    assert text.startswith("# Title") and text.endswith(f"{REFERENCE_END}\nEnd.\n")
    assert "| old | table |" not in text and reference_table() in text
    (tmp_path / "other.md").write_text("no table here")
    refused = CliRunner().invoke(main, ["settings", "--write", str(tmp_path / "other.md")])
    assert refused.exit_code != 0 and "no generated table" in refused.output


def test_every_setting_has_a_written_default() -> None:
    """A default the table cannot write plainly names itself (``reference_default``)."""
    for name, shown, meaning in setting_reference():
        assert shown == "–" or shown.startswith(("`", "– (")), name
        assert meaning and "|" not in meaning.replace("\\|", ""), name


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
