"""`clinrisk serve` (gunicorn) and `clinrisk user` (the users file of the web service)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from clinrisk.cli import emit_json, path_option
from clinrisk.settings import load_settings

APP = "clinrisk.web:create_app()"
CONFIG = "python:clinrisk.web.gunicorn_conf"


def gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        CONFIG,
        "--bind",
        bind,
        "--workers",
        str(workers),
        APP,
    ]


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes [CLINRISK_WORKERS]."
)
def serve(host: str, port: int, workers: int | None) -> None:
    """Serve the champion over HTTP with gunicorn; Ctrl-C or SIGTERM stops it gracefully."""
    from clinrisk.credentials import refuse_weak, url_password
    from clinrisk.spec import load_spec

    settings = load_settings()
    load_spec(settings.spec_path)  # a missing or broken spec fails here, not in every worker
    refuse_weak(
        os.environ.get("CLINRISK_PUBLISHED_ADDRESS", host),
        {
            "CLINRISK_ADMIN_PASSWORD": os.environ.get("CLINRISK_ADMIN_PASSWORD") or None,
            "CLINRISK_PREDICTION_LOG_URL": url_password(settings.prediction_log_url),
            "MLFLOW_TRACKING_PASSWORD": os.environ.get("MLFLOW_TRACKING_PASSWORD") or None,
        },
    )
    settings.ensure_home()
    command = gunicorn_command(host, port, workers or settings.workers)
    click.echo(f"serving {settings.model_name} on http://{host}:{port} (docs at /docs)", err=True)
    sys.stdout.flush()
    os.execv(sys.executable, command)


users_file_option = path_option("--users-file", default=None, help="Users file [CLINRISK_USERS_FILE].")


def _users_file(path: Path | None) -> Path:
    return path or load_settings().users_file


def _read_password(confirm: bool = True) -> str:
    """The password from the first line of stdin, or a hidden prompt on a terminal."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return sys.stdin.readline().rstrip("\r\n")


@click.group()
def user() -> None:
    """Manage who may call /predict, /feedback and /model."""


@user.command("add")
@click.argument("name")
@click.option("--api-key", is_flag=True, help="Also create an API key and print it (shown only once).")
@click.option("--no-password", is_flag=True, help="API key only: do not read a password.")
@click.option("--replace", is_flag=True, help="Set a new password for an existing user.")
@users_file_option
def add(name: str, api_key: bool, no_password: bool, replace: bool, users_file: Path | None) -> None:
    """Add user NAME; the password is read from stdin."""
    from clinrisk.web import users

    path = _users_file(users_file)
    users.add_user(path, name, None if no_password else _read_password(), replace=replace)
    key = users.add_api_key(path, name) if api_key or no_password else None
    if key:
        click.echo("Store this API key now; it cannot be shown again.", err=True)
    emit_json({"user": name, "users_file": str(path), "api_key": key})


@user.command("key")
@click.argument("name")
@users_file_option
def key(name: str, users_file: Path | None) -> None:
    """Create another API key for user NAME and print it (shown only once)."""
    from clinrisk.web import users

    path = _users_file(users_file)
    emit_json({"user": name, "users_file": str(path), "api_key": users.add_api_key(path, name)})


@user.command("remove")
@click.argument("name")
@users_file_option
def remove(name: str, users_file: Path | None) -> None:
    """Remove user NAME and every API key of theirs."""
    from clinrisk.web import users

    path = _users_file(users_file)
    users.remove_user(path, name)
    emit_json({"removed": name, "users_file": str(path)})


@user.command("list")
@users_file_option
def list_(users_file: Path | None) -> None:
    """List users (names, key ids and dates; never secrets)."""
    from clinrisk.web import users

    path = _users_file(users_file)
    emit_json({"users_file": str(path), "users": users.list_users(path)})
