"""The ``bedside`` command line.

Every option that sets a setting falls back to its ``BEDSIDE_*`` variable, and ``--help``
names it. Subcommands of other packages (``stack`` from ``deploy``, later ``train`` from
``models`` and ``export``) are entry points in the ``bedside.commands`` group, so this
package never imports them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from .settings import BrokerProfile, KafkaSettings, Settings, env_var, get_settings

F = TypeVar("F", bound=Callable[..., Any])
COMMAND_GROUP = "bedside.commands"


def setting_option(flag: str, *path: str, help: str, **kwargs: Any) -> Callable[[F], F]:  # noqa: A002
    """A CLI option that overrides the setting at ``path`` and falls back to its env var."""
    return click.option(
        flag,
        "__".join(path),
        envvar=env_var(*path),
        show_envvar=True,
        default=None,
        help=help,
        **kwargs,
    )


def settings_from_options(**options: Any) -> Settings:
    """Settings from the environment, overridden by the options given on the command line."""
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or "__" not in key:
            continue
        section, _, name = key.partition("__")
        overrides.setdefault(section, {})[name] = value
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_var(*map(str, err['loc']))}: {err['msg']}" for err in exc.errors()
        )
        msg = f"invalid settings: {problems}"
        raise click.UsageError(msg) from exc


class BedsideGroup(click.Group):
    """Click group that adds the subcommands other packages register as entry points."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and (plugin := self._plugins().get(cmd_name)) is not None:
            loaded: click.Command = plugin.load()
            return loaded
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Any command: a broker that refuses us (TLS trust, SASL credentials) is said in
        words naming the settings, not as aiokafka's "Unable to bootstrap"."""
        from .engine.broker import BootstrapError

        try:
            return super().invoke(ctx)
        except BootstrapError as error:
            raise click.ClickException(broker_refusal(get_settings().kafka, error)) from error


def broker_refusal(kafka: KafkaSettings, error: Exception) -> str:
    """Why the broker cannot be used, as well as one connection can tell."""
    from .engine.broker import access_problem

    problem = asyncio.run(access_problem(kafka))
    return problem or f"the broker at {kafka.bootstrap} cannot be reached ({error})"


@click.group(cls=BedsideGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bedside")
def main() -> None:
    """Bedside: streaming monitoring of patients with chronic disease (decision support).

    Settings come from BEDSIDE_* environment variables (nested sections joined with
    '__', e.g. BEDSIDE_KAFKA__BOOTSTRAP) or a .env file; command-line options win.
    """


@main.command()
@setting_option(
    "--bootstrap", "kafka", "bootstrap", help="Kafka bootstrap servers (host:port,...)."
)
@setting_option(
    "--profile",
    "kafka",
    "profile",
    type=click.Choice([p.value for p in BrokerProfile]),
    help="Broker profile: auto detects the embedded broker by its cluster id.",
)
@setting_option("--web-host", "web", "host", help="Interface of the worker's web server.")
@setting_option("--web-port", "web", "port", type=int, help="Port of the worker's web server.")
@setting_option(
    "--store", "worker", "store", type=click.Choice(["memory", "rocksdb"]), help="Table store."
)
@setting_option("--data-dir", "worker", "data_dir", help="Worker data directory (RocksDB files).")
@setting_option(
    "--log-level",
    "worker",
    "log_level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level.",
)
def worker(**options: Any) -> None:
    """Run a stream worker (Faust) against the configured broker until stopped."""
    from .access.users import UsersFileError
    from .engine.app import UnsupportedGuaranteeError, run_worker
    from .engine.broker import (
        BrokerAccessError,
        BrokerUnavailableError,
        TopicMismatchError,
        access_problem,
        ensure_bedside_topics,
        resolve_profile,
    )
    from .engine.consumer import IncompatibleConsumerError
    from .engine.embedded import IncompatibleFaustError
    from .patients import PatientSettingsError
    from .scoring.onnx import ModelError
    from .settings import BrokerProfile
    from .worker import create_worker

    settings = settings_from_options(**options)
    logging.basicConfig(level=settings.worker.log_level.upper())
    if settings.log.format == "json":  # the lines before the worker takes the log over too
        from .logsafe import use_json

        use_json(logging.getLogger().handlers)
    try:
        if settings.kafka.security_protocol != "PLAINTEXT":  # refused: say why, do not spin
            problem = asyncio.run(access_problem(settings.kafka))
            if problem is not None:
                raise BrokerAccessError(problem)
        profile = settings.kafka.profile
        if profile is BrokerProfile.AUTO:
            profile = resolve_profile(settings.kafka)
        if profile is BrokerProfile.EMBEDDED:
            # the embedded broker keeps nothing across a restart, and Faust needs its source
            # topics before it starts: (re)create them
            created = asyncio.run(ensure_bedside_topics(settings.kafka, settings.topics))
            if created:
                logging.getLogger(__name__).warning(
                    "embedded broker: created %d missing Bedside topics", len(created)
                )
        app = create_worker(settings, profile)
    except (
        BrokerAccessError,
        TopicMismatchError,
        BrokerUnavailableError,
        PatientSettingsError,
        UsersFileError,
        ModelError,
        IncompatibleConsumerError,
        IncompatibleFaustError,
        UnsupportedGuaranteeError,
    ) as exc:
        raise click.ClickException(str(exc)) from exc
    run_worker(
        app,
        settings.worker.log_level,
        debug_libraries=settings.worker.debug_libraries,
        log_format=settings.log.format,
    )


@main.group()
def users() -> None:
    """Named users of the care-team page and API (the users file)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["nurse", "physician", "admin"]),
    required=True,
    help="nurse: view and ack/snooze; physician: also model details; admin: also settings.",
)
@click.option(
    "--ward",
    "wards",
    multiple=True,
    required=True,
    help="A ward the user sees (repeat for several; '*' for every ward).",
)
@setting_option("--file", "web", "users_file", help="The users file (created if missing).")
def users_add(name: str, role: str, wards: tuple[str, ...], **options: Any) -> None:
    """Add or replace a user; prints their bearer token once (the file keeps only its hash)."""
    from .access.users import Role, UsersFileError, add_user

    path = settings_from_options(**options).web.users_file
    if path is None:
        msg = "no users file: give --file or set BEDSIDE_WEB__USERS_FILE"
        raise click.UsageError(msg)
    try:
        token = add_user(path, name, Role[role.upper()], list(wards))
    except (UsersFileError, ValidationError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(token)


@users.command("list")
@setting_option("--file", "web", "users_file", help="The users file.")
def users_list(**options: Any) -> None:
    """Print the users (name, role, wards; never tokens) as JSON lines."""
    import json

    from .access.users import UsersFileError, read_users

    try:
        found = read_users(settings_from_options(**options).web.users_file)
    except UsersFileError as error:
        raise click.ClickException(str(error)) from error
    for user in found.users:
        click.echo(json.dumps(user.public()))


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/schemas"),
    show_default=True,
    help="Folder the JSON Schemas are written to.",
)
def schemas(out: Path) -> None:
    """Write the JSON Schema of every topic other systems read or write."""
    from .contracts import write_schemas

    for path in write_schemas(out):
        click.echo(str(path))


@main.command("settings")
@click.option(
    "--write",
    "page",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Replace the generated table of this page (docs/configuration.md) instead of printing.",
)
def settings_reference(page: Path | None) -> None:
    """Print the configuration reference: every BEDSIDE_* variable, its default and meaning,
    generated from the settings themselves (Markdown)."""
    from .settings import reference_table, with_reference

    if page is None:
        click.echo(reference_table(), nl=False)
        return
    try:
        page.write_text(with_reference(page.read_text()))
    except (OSError, ValueError) as error:
        msg = f"{page}: {error}"
        raise click.ClickException(msg) from error
    click.echo(f"{page}: the configuration table is the settings' own")


@main.command()
@setting_option("--bootstrap", "kafka", "bootstrap", help="Kafka bootstrap servers.")
@setting_option("--topic-prefix", "topics", "prefix", help="Prefix of topic names.")
@setting_option("--partitions", "topics", "partitions", type=int, help="Partitions of every topic.")
@setting_option(
    "--replication-factor", "topics", "replication_factor", type=int, help="Replicas of each."
)
def topics(**options: Any) -> None:
    """Create Bedside's topics that do not exist yet, on the configured broker (run it once
    with a principal allowed to create them, before the workers); existing topics are
    checked for the configured partition count."""
    from .engine.broker import TopicMismatchError, ensure_bedside_topics

    settings = settings_from_options(**options)
    try:
        created = asyncio.run(ensure_bedside_topics(settings.kafka, settings.topics))
    except TopicMismatchError as exc:
        raise click.ClickException(str(exc)) from exc
    present = len(settings.topics.all) - len(created)
    click.echo(f"{len(created)} created, {present} present: {', '.join(created) or '-'}")


def run() -> None:
    """Entry point for ``python -m streams``."""
    sys.exit(main())
