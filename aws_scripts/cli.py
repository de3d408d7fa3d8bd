"""The options every step shares, and the one place that turns DeployError into exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from aws_scripts.common import CONFIG_DIR, ENVIRONMENTS, DeployError, load_environment

SHARED_OPTIONS = (
    click.option("--env", "env_name", type=click.Choice(ENVIRONMENTS), required=True),
    click.option("--dry-run", is_flag=True, help="Print the plan; call nothing."),
    click.option(
        "--config-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=CONFIG_DIR,
        envvar="AWS_SCRIPTS_CONFIG_DIR",
        show_default=True,
        help="The directory holding <env>.yaml.",
    ),
)


def env_options(function: Callable) -> Callable:
    """Add --env, --dry-run and --config-dir; call `function(environment, dry_run=..., ...)`."""

    @functools.wraps(function)
    def command(env_name: str, config_dir: Path, **options):
        with reported_errors():
            return function(load_environment(env_name, config_dir), **options)

    for option in reversed(SHARED_OPTIONS):
        command = option(command)
    return command


class reported_errors:
    """Print a DeployError as one line on stderr and exit 1, with no traceback."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, DeployError):
            raise click.ClickException(str(exc))
        return False
