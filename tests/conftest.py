"""Shared fixtures: synthetic, PHI-free data only."""

import socket
from collections.abc import Callable

import pytest


def free_port() -> int:
    """A TCP port nothing listens on right now (for tests' own servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port() -> Callable[[], int]:
    """Factory of free loopback ports."""
    return free_port
