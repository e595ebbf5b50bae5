"""The CLI documents every command, every option, and the variable behind each option."""

import click
import pytest
from click.testing import CliRunner

from streams.cli import main


def _walk(command: click.Command, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found = [(ctx.command_path, command)]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found.extend(_walk(sub, click.Context(sub, info_name=name, parent=ctx)))
    return found


def test_every_command_has_help_and_every_option_names_its_env_var() -> None:
    commands = _walk(main, click.Context(main, info_name="bedside", **main.context_settings))
    paths = [path for path, _ in commands]
    assert {
        "bedside worker",
        "bedside stack up",
        "bedside stack down",
        "bedside stack status",
        "bedside train",
        "bedside evaluate",
        "bedside export",
    } <= set(paths)
    runner = CliRunner()
    for path, command in commands:
        assert command.help, f"{path} has no help text"
        args = path.split()[1:] + ["--help"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path} {param.opts[0]} has no help text"
            if isinstance(param, click.Option) and param.envvar:
                assert f"env var: {param.envvar}" in " ".join(result.output.split()), (path, param)


def test_bad_setting_from_the_command_line_is_a_clear_usage_error() -> None:
    result = CliRunner().invoke(main, ["stack", "status", "--partitions", "0"])
    assert result.exit_code == 2
    assert "BEDSIDE_TOPICS__PARTITIONS" in result.output


@pytest.mark.parametrize("args", [["--version"], ["-h"]])
def test_top_level_flags(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args",
    [["train", "glucose", "--treatments"], ["train", "deterioration", "--real", "--treatments"]],
)
def test_the_treatments_ablation_is_for_real_glucose_only(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--treatments goes with `train glucose --real`" in result.output
