"""Tests run against the installed package, not the source tree (generic import names)."""

import sysconfig
from importlib.metadata import distribution
from pathlib import Path

import deploy
import streams


def test_packages_come_from_the_installed_distribution() -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for package in (streams, deploy):
        assert Path(package.__file__).resolve().is_relative_to(site), package.__file__
    files = {str(f) for f in distribution("bedside").files or []}
    assert "streams/settings.py" in files
    assert "deploy/stack.py" in files
    assert "streams/engine/health.py" in files
    assert not any(f.startswith("tests/") for f in files)
