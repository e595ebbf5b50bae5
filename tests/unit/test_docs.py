"""The README documents every setting and every topic."""

from pathlib import Path

from streams.settings import get_settings, iter_setting_env_vars

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_configuration_table() -> None:
    text = README.read_text()
    missing = [name for name in iter_setting_env_vars() if f"| `{name}` |" not in text]
    assert not missing


def test_every_topic_is_in_the_topics_table() -> None:
    text = README.read_text()
    assert all(f"| `{topic}` |" in text for topic in get_settings().topics.all)
