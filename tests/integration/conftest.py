"""The real local stack, started once per test session with ``bedside stack up``.

It runs on its own ports and directory so a developer's demo stack is left alone.
Override with BEDSIDE_TEST_BROKER_PORT / BEDSIDE_TEST_TSDB_PORT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.stack import LocalStack
from streams.settings import Settings, get_settings

BEDSIDE = shutil.which("bedside", path=str(Path(sys.executable).parent)) or "bedside"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def bedside(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``bedside`` command."""
    result = subprocess.run(
        [BEDSIDE, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"bedside {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def stack_env(stack_dir: Path, broker_port: int, tsdb_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    env.update(
        BEDSIDE_STACK__DIR=str(stack_dir),
        BEDSIDE_STACK__BROKER_PORT=str(broker_port),
        BEDSIDE_STACK__TSDB_PORT=str(tsdb_port),
        BEDSIDE_KAFKA__BOOTSTRAP=f"127.0.0.1:{broker_port}",
        BEDSIDE_INFLUX__URL=f"http://127.0.0.1:{tsdb_port}",
    )
    return env


@pytest.fixture(scope="session")
def stack_env_vars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of the session's stack: BEDSIDE_* variables pointing at it."""
    env = stack_env(
        tmp_path_factory.mktemp("stack"),
        int(os.environ.get("BEDSIDE_TEST_BROKER_PORT", "19092")),
        int(os.environ.get("BEDSIDE_TEST_TSDB_PORT", "18086")),
    )
    bedside("stack", "up", env=env)
    try:
        yield env
    finally:
        bedside("stack", "down", env=env)


@pytest.fixture(scope="session")
def stack_settings(stack_env_vars: dict[str, str]) -> Settings:
    """Settings that reach the session's stack."""
    return settings_for(stack_env_vars)


def settings_for(env: dict[str, str]) -> Settings:
    """Settings built from the BEDSIDE_* variables of ``env`` (as a subprocess would)."""
    overrides: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if key.startswith("BEDSIDE_") and "__" in key:
            section, _, name = key.removeprefix("BEDSIDE_").lower().partition("__")
            overrides.setdefault(section, {})[name] = value
    return get_settings(**overrides)


@pytest.fixture(scope="session")
def run_bedside() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the installed ``bedside`` command: ``run_bedside(*args, env=..., check=True)``."""
    return bedside


@pytest.fixture(scope="session")
def make_stack_env() -> Callable[[Path, int, int], dict[str, str]]:
    """Environment for a separate stack: ``make_stack_env(dir, broker_port, tsdb_port)``."""
    return stack_env


@pytest.fixture(scope="session")
def make_settings() -> Callable[[dict[str, str]], Settings]:
    """Settings from the BEDSIDE_* variables of an environment."""
    return settings_for


@pytest.fixture(scope="session")
def local_stack(stack_settings: Settings) -> LocalStack:
    return LocalStack(stack_settings)
