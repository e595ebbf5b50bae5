"""Parts of the local stack that need no processes."""

from pathlib import Path

import pytest

from deploy import stack


def test_missing_tsdb_says_which_command_installs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda _name: None)
    with pytest.raises(stack.StackError) as caught:
        stack._tsdb_binary(fallback=tmp_path / "absent")
    message = str(caught.value)
    assert "apt-get update" in message
    assert "apt-get install -y victoria-metrics" in message


def test_process_start_ticks_of_a_missing_pid_is_none() -> None:
    assert stack._process_start_ticks(2**22 + 12345) is None
