"""``bedside stack up | down | status``: the embedded local stack."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from streams.cli import setting_option, settings_from_options

from .stack import Health, LocalStack, StackError


def _stack_options(command: Any) -> Any:
    for decorator in reversed(
        [
            setting_option("--dir", "stack", "dir", help="Directory for data, logs and pid files."),
            setting_option(
                "--broker-port",
                "stack",
                "broker_port",
                type=int,
                help="Port of the embedded Kafka-compatible broker.",
            ),
            setting_option(
                "--tsdb-port",
                "stack",
                "tsdb_port",
                type=int,
                help="Port of the InfluxDB-write-compatible server.",
            ),
            setting_option(
                "--ready-timeout",
                "stack",
                "ready_timeout_s",
                type=float,
                help="Seconds to wait for each component to become healthy.",
            ),
            setting_option(
                "--partitions",
                "topics",
                "partitions",
                type=int,
                help="Partitions of every Bedside topic.",
            ),
            setting_option("--topic-prefix", "topics", "prefix", help="Prefix of topic names."),
        ]
    ):
        command = decorator(command)
    return command


def _quiet_clients() -> None:
    # health checks report failures themselves; the clients' own connect errors are noise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _print_status(stack: LocalStack) -> bool:
    statuses = stack.status()
    for status in statuses:
        pid = f"pid {status.pid}" if status.pid else "-"
        line = f"{status.name:<8} {status.address:<24} {status.health.value:<10} {pid}"
        click.echo(f"{line}  {status.detail}".rstrip())
    return all(status.health is Health.HEALTHY for status in statuses)


@click.group()
def stack() -> None:
    """The embedded local stack: Tansu broker + InfluxDB-compatible time-series server."""
    _quiet_clients()


@stack.command()
@_stack_options
def up(**options: Any) -> None:
    """Start the broker and time-series server, create topics; harmless when already up."""
    local = LocalStack(settings_from_options(**options))
    try:
        local.up(echo=click.echo)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    if not _print_status(local):
        sys.exit(1)


@stack.command()
@_stack_options
def down(**options: Any) -> None:
    """Stop exactly the processes 'stack up' started (the broker's data is in memory: lost)."""
    LocalStack(settings_from_options(**options)).down(echo=click.echo)


@stack.command()
@_stack_options
def status(**options: Any) -> None:
    """Print each component, its address and health; exit 1 unless all are healthy."""
    if not _print_status(LocalStack(settings_from_options(**options))):
        sys.exit(1)
