"""`clinrisk up`: the whole stack on local defaults, in the foreground, until Ctrl-C."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import requests

from clinrisk import credentials
from clinrisk.inbox import create_inboxes
from clinrisk.settings import PROJECT_ROOT, load_settings
from clinrisk.stack import processes
from clinrisk.stack.accounts import Admin, ensure_admin
from clinrisk.stack.config import StackConfig, check_ports_free, environment, forget_stack, prepare_home
from clinrisk.stack.control_plane import service_environments
from clinrisk.stack.processes import executable


def project_dir() -> Path:
    """The checkout holding prefect.yaml: the current directory, else the installed one."""
    return Path.cwd() if (Path.cwd() / "prefect.yaml").is_file() else PROJECT_ROOT


EXAMPLE_PATIENT = Path("examples") / "patient.json"


def shown(path: Path, config: StackConfig) -> str:
    """A path as a user types it in the project root: relative when inside it."""
    try:
        return str(path.relative_to(config.project_dir))
    except ValueError:
        return str(path)


def clinrisk_command(config: StackConfig) -> str:
    """How to run this environment's `clinrisk` from a new shell in the project root."""
    in_project = config.project_dir / ".venv" / "bin" / "clinrisk"
    return shown(in_project if in_project.exists() else Path(executable("clinrisk")), config)


def describe(
    config: StackConfig,
    admin: Admin | None,
    auth_enabled: bool,
    model_name: str = "stroke",
    champions: dict[str, str | None] | None = None,
) -> str:
    """The banner printed once everything answers: URLs, each model's champion, how to authenticate
    and run a flow."""
    rows = [
        ("Prediction service", f"{config.service_url}  (POST /predict)"),
        ("API docs", f"{config.service_url}/docs"),
        ("MLflow UI", config.mlflow_url),
        ("Prefect UI", config.prefect_url),
        ("Evidently UI", f"{config.evidently_url}  (project clinrisk-{model_name})"),
        ("Reports", f"{config.reports_index.as_uri()}  (written by the flows)"),
    ]
    clinrisk = clinrisk_command(config)
    lines = ["", f"clinrisk stack is up; state in {config.home}", ""]
    lines += [f"  {name:<20}{url}" for name, url in rows]
    lines += model_lines(champions or {})
    lines += ["", *auth_lines(config, admin, auth_enabled), *control_plane_lines(config)]
    run_hint = "(or retrain; --model NAME, --param key=value)"
    lines += ["", f"Run a flow now: {clinrisk} flows run monitor --wait   {run_hint}"]
    lines += ["", "Ctrl-C stops every process of the stack."]
    return "\n".join(lines) + "\n"


def model_lines(champions: dict[str, str | None]) -> list[str]:
    """One line per model: its champion version, or that it has none (see the init output above)."""
    lines = ["", "Models (Evidently project clinrisk-<model>; flows retrain/<model>, monitor/<model>, ...):"]
    width = max(map(len, champions), default=0) + 2  # diabetes_progression is 20 characters
    for name, version in champions.items():
        lines.append(f"  {name:<{width}}" + (f"champion version {version}" if version else "no champion yet"))
    return lines if champions else []


def auth_lines(config: StackConfig, admin: Admin | None, auth_enabled: bool) -> list[str]:
    """How to authenticate against the service."""
    if not auth_enabled:
        return ["Authentication is OFF (CLINRISK_AUTH_ENABLED=false)."]
    lines = []
    if admin is not None and admin.new_password:
        lines.append(f"Created user '{admin.name}' with password {admin.new_password} (shown once).")
    if admin is not None:
        lines += [
            f"Log in as '{admin.name}' (HTTP basic auth); the password is in {admin.password_file}:",
            f"  curl -u {admin.name}:$(cat {admin.password_file}) -H 'Content-Type: application/json' \\",
            f"       -d @{shown(config.project_dir / EXAMPLE_PATIENT, config)} {config.service_url}/predict",
        ]
    else:
        lines.append("Log in with a user you added (HTTP basic auth).")
    lines.append(
        f"Add a user: {clinrisk_command(config)} user add NAME [--api-key]   (reads the password from stdin)"
    )
    return lines


def control_plane_secrets(config: StackConfig) -> dict[str, dict[str, str]]:
    """Generate the control plane's secrets once (0600), refuse weak ones beyond the loopback;
    each process's own variables."""
    credentials.generate(config.home)
    values = credentials.load(config.home)
    credentials.refuse_weak(config.host, {name: values[name] for name in credentials.SECRETS})
    return service_environments(config, values)


def control_plane_lines(config: StackConfig) -> list[str]:
    """Where the MLflow, Prefect and Evidently secrets are, and who logs in with which."""
    path = shown(config.home / credentials.CREDENTIALS_FILE, config)
    return [
        f"MLflow, Prefect and Evidently need credentials, kept in {path} (0600);",
        "  `clinrisk` commands read them from there. In a browser, log in to MLflow",
        "  as 'admin' with MLFLOW_AUTH_ADMIN_PASSWORD, to Prefect with PREFECT_SERVER_API_AUTH_STRING.",
    ]


def announce_when_ready(config: StackConfig, banner: Callable[[dict], str], echo=click.echo) -> None:
    """Print the banner, `banner(champions)`, once initialisation is done and the service answers
    (serves the default model's champion)."""
    while not config.ready_file.exists():
        time.sleep(1)
    ready = json.loads(config.ready_file.read_text() or "{}")
    has_champion = ready.get("champion") is not None
    probe = f"{config.service_url}/ready" if has_champion else f"{config.service_url}/health"
    while True:
        try:
            if requests.get(probe, timeout=2).ok:
                echo(banner(ready.get("champions") or {}))
                return
        except requests.RequestException:
            pass
        time.sleep(1)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CLINRISK_STACK_HOST")
@click.option("--service-port", type=int, default=8000, show_default=True, envvar="CLINRISK_SERVICE_PORT")
@click.option("--mlflow-port", type=int, default=5000, show_default=True, envvar="CLINRISK_MLFLOW_PORT")
@click.option("--prefect-port", type=int, default=4200, show_default=True, envvar="CLINRISK_PREFECT_PORT")
@click.option("--evidently-port", type=int, default=8001, show_default=True, envvar="CLINRISK_EVIDENTLY_PORT")
@click.option("--web-workers", type=click.IntRange(min=1), default=None, help="Gunicorn workers.")
@click.option("--no-train", is_flag=True, help="Do not train a first champion when there is none.")
@click.option("--redeploy", is_flag=True, help="Re-register all deployments (resets UI schedule edits).")
def up(
    host, service_port, mlflow_port, prefect_port, evidently_port, web_workers, no_train, redeploy
) -> None:
    """Start MLflow, Prefect, Evidently's UI, a worker with the deployments and the web service.

    A process that exits unexpectedly is restarted (a few times); Ctrl-C stops them all.
    """
    settings = load_settings()
    config = StackConfig(
        home=settings.home,
        project_dir=project_dir(),
        host=host,
        service_port=service_port,
        mlflow_port=mlflow_port,
        prefect_port=prefect_port,
        evidently_port=evidently_port,
        web_workers=web_workers or settings.workers,
        artifacts_destination=settings.artifacts_destination,
        s3_endpoint_url=settings.s3_endpoint_url,
        evidently_workspace=settings.evidently_workspace,
        reports_dir=settings.reports_dir,
    )
    check_ports_free(config)
    prepare_home(config)
    create_inboxes(settings)
    secrets = control_plane_secrets(config)
    env = {**os.environ, **environment(config)}
    admin = ensure_admin(settings, env)
    banner = functools.partial(describe, config, admin, settings.auth_enabled, settings.model_name)
    supervisor = processes.supervisor(config, env, train=not no_train, redeploy=redeploy, secrets=secrets)
    threading.Thread(target=announce_when_ready, args=(config, banner, supervisor.echo), daemon=True).start()
    try:
        code = processes.run(supervisor)
    finally:
        forget_stack(config)
    sys.exit(code)
