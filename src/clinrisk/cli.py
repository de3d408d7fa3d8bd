"""The `clinrisk` command line: a thin layer over the package's modules.

Commands are imported lazily, so `clinrisk --help` stays fast and a command only pays for
the libraries it uses. Any ClinriskError becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import click

from clinrisk import library_logs
from clinrisk.errors import ClinriskError, DataValidationError

# Command name -> "module:attribute" of a click command. Each area of the product owns its
# own commands module; this table is the only place they are wired together.
COMMANDS = {
    "train": "clinrisk.commands:train",
    "predict": "clinrisk.commands:predict",
    "promote": "clinrisk.commands:promote",
    "rollback": "clinrisk.commands:rollback",
    "models": "clinrisk.commands:models",
    "data": "clinrisk.data_commands:data",
    "credentials": "clinrisk.commands:credentials",
    "serve": "clinrisk.web.commands:serve",
    "user": "clinrisk.web.commands:user",
    "monitor": "clinrisk.monitoring.commands:monitor",
    "up": "clinrisk.stack:up",
    "flows": "clinrisk.flows.commands:flows",
}

EXIT_INVALID_DATA = 2
EXIT_ERROR = 1


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DataValidationError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID_DATA)
        except ClinriskError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)


# Which stack account a command logs in to MLflow with (default: the writer); `up` gives each
# of its processes its own, so it takes none itself.
ACCOUNT_OF = {"serve": "reader", "up": None}


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log progress and every library's INFO lines to stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Retrain, monitor and serve clinical risk models (stroke first)."""
    library_logs.configure(verbose)
    os.umask(os.umask(0o077) | 0o077)  # see owner_only_home
    from clinrisk.settings import load_settings

    try:
        home = load_settings().home
    except ClinriskError:  # the command itself reports invalid settings
        return
    owner_only_home(home)
    use_stack_credentials(home, ACCOUNT_OF.get(ctx.invoked_subcommand, "writer"))


def owner_only_home(home: Path) -> None:
    """Keep the state directory its owner's only. With umask 077 (set above, inherited by the
    stack's children) every file and directory is created so too: the databases (predictions,
    MLflow, its accounts), reports and scored files hold patient data or secrets, and SQLite and
    MLflow create theirs with the process's umask (0644 under the usual 022)."""
    if home.is_dir() and home.stat().st_uid == os.getuid():
        home.chmod(0o700)  # made by an older release or by hand with 0755


def use_stack_credentials(home: Path, role: str | None) -> None:
    """Log in to the local stack's MLflow and Prefect with the credentials `make up` generated."""
    if role is None:
        return
    from clinrisk import credentials

    credentials.use_stack_credentials(home, role)


def emit_json(payload: dict) -> None:
    """Print the machine-readable result as the last line of output."""
    click.echo(json.dumps(payload, default=str))


def path_option(*names: str, **kwargs):
    return click.option(*names, type=click.Path(path_type=Path), **kwargs)
