"""The real local stack, started once per test session with ``bedside stack up``.

It runs on its own ports and directory so a developer's demo stack is left alone.
Override with BEDSIDE_TEST_BROKER_PORT / BEDSIDE_TEST_TSDB_PORT.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from care_team import SIGNING_KEY, write_users
from stream_helpers import off_contract

from deploy.stack import LocalStack
from deploy.tsdb import export_series, force_flush
from streams.settings import Settings, get_settings

BEDSIDE = shutil.which("bedside", path=str(Path(sys.executable).parent)) or "bedside"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port() -> Callable[[], int]:
    """Factory of free loopback ports."""
    return free_port


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


#: The brokers a module that sets ``BOTH_BROKERS = True`` runs on: Tansu (the embedded
#: profile) and a one-node Apache Kafka (Faust's ``kafka`` profile). Other modules run on Tansu.
BROKERS = ("tansu", "kafka")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_BROKERS", False):
        only = metafunc.definition.get_closest_marker("tansu_only")
        brokers = ("tansu",) if only else BROKERS
        metafunc.parametrize("broker", brokers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> str:
    """The broker of the session's stack (``tansu`` unless the module runs on both)."""
    return str(getattr(request, "param", "tansu"))


@pytest.fixture(scope="session")
def stack_env_vars(
    broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Environment of the session's stack: BEDSIDE_* variables pointing at it. The Kafka
    stack has its own ports (the broker's + 10, the time-series server's + 1) so it can run
    beside the Tansu one."""
    folder = tmp_path_factory.mktemp(f"stack-{broker}")
    shift = (10, 1) if broker == "kafka" else (0, 0)
    env = stack_env(
        folder,
        int(os.environ.get("BEDSIDE_TEST_BROKER_PORT", "19092")) + shift[0],
        int(os.environ.get("BEDSIDE_TEST_TSDB_PORT", "18086")) + shift[1],
    )
    if broker == "kafka":
        env.update(BEDSIDE_STACK__BROKER="kafka", BEDSIDE_STACK__READY_TIMEOUT_S="120")
    # every worker of the session knows the same users and signs with the same key
    env["BEDSIDE_WEB__USERS_FILE"] = str(write_users(folder / "users.json"))
    env["BEDSIDE_SECURITY__SIGNING_KEY"] = SIGNING_KEY
    bedside("stack", "up", env=env, timeout=600)
    try:
        yield env
        # every event the session's workers wrote conforms to its published contract
        checked, problems = asyncio.run(off_contract(settings_for(env)))
        assert not problems, f"{len(problems)} of {checked} records off contract: {problems[:20]}"
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


class WorkerProcess:
    """A worker subprocess whose output goes to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, web_port: int) -> None:
        self.log = log
        self.web_port = web_port
        with open(log, "ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            text = self.log.read_text(errors="replace")
            # the cause is usually far above the shutdown lines: show the errors first
            notable = [
                line
                for line in text.splitlines()
                if "[ERROR]" in line
                or "[CRITICAL]" in line
                or line.startswith(("Traceback", "  "))
                or "Error:" in line
            ]
            raise AssertionError(
                f"worker exited {self.process.returncode}; errors:\n"
                + "\n".join(notable[:60])[:6000]
                + f"\n... last lines:\n{text[-2000:]}"
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                    if json.loads(response.read()).get("ready"):
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def spawn_worker(
    stack_env_vars: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerProcess]]:
    """spawn_worker(script=None, **env) starts ``bedside worker`` (or a script) on the stack."""
    started: list[WorkerProcess] = []

    def spawn(script: Path | None = None, **env: str) -> WorkerProcess:
        web_port = free_port()
        folder = tmp_path_factory.mktemp("worker")
        full_env = {
            **os.environ,
            **stack_env_vars,
            "BEDSIDE_WORKER__APP_ID": f"test-{uuid.uuid4().hex[:8]}",
            "BEDSIDE_WORKER__DATA_DIR": str(folder / "data"),
            "BEDSIDE_WEB__PORT": str(web_port),
            **env,
        }
        argv = [sys.executable, str(script), "worker"] if script else [BEDSIDE, "worker"]
        worker = WorkerProcess(argv, full_env, folder / "worker.log", web_port)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def read_series(stack_settings: Settings) -> Callable[..., list[dict[str, object]]]:
    """read_series(selector, count, timeout=20): poll the tsdb until ``count`` series match."""
    url = stack_settings.influx.url

    def read(selector: str, count: int, timeout: float = 20) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        series: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            force_flush(url)
            series = export_series(url, selector)
            if len(series) >= count:
                return series
            time.sleep(0.3)
        return series

    return read


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Playwright's client for the Chromium tests (``tests/browser``), installed once."""
    browser = Path(__file__).parents[1] / "browser"
    if not (browser / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=browser, check=True)
