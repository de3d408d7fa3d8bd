"""The processes of the local stack and their command lines; `supervisor` runs them.

Each runs in its own process group. Its pid files (`<home>/run/<name>.pid` and `.pgid`) let
`kill_leftovers` kill any straggler once the stack has stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from clinrisk.stack.config import VENV_BIN, StackConfig


def executable(name: str) -> str:
    """A console script of this environment, else the one on PATH."""
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name) or name


def commands(config: StackConfig, train: bool = True, redeploy: bool = False) -> dict[str, list[str]]:
    """The command line of each process, in start order."""
    after_init = [sys.executable, "-m", "clinrisk.stack.after", str(config.ready_file), "--"]
    return {
        "mlflow": mlflow_command(config),
        "prefect": [executable("prefect"), "server", "start", *listen(config.host, config.prefect_port)],
        "evidently": evidently_command(config),
        # Initialisation runs first in the worker's process, which then becomes the worker:
        # a one-shot process would look to the supervisor like a service that exited.
        "worker": [*bootstrap_command(config, train, redeploy), "--", *worker_command(config)],
        # The web service starts once initialisation is done, so it loads the champion at once.
        "web": [*after_init, *web_command(config)],
    }


def listen(host: str, port: int) -> list[str]:
    return ["--host", host, "--port", str(port)]


def mlflow_command(config: StackConfig) -> list[str]:
    """MLflow on the same SQLite store and artifact directory as the CLI's defaults."""
    store = f"sqlite:///{config.home / 'mlflow.db'}"
    command = [executable("mlflow"), "server", "--app-name", "basic-auth"]  # see stack.control_plane
    command += ["--backend-store-uri", store, "--workers", "1"]
    command += artifact_options(config)
    command += ["--uvicorn-opts", "--no-access-log"]  # its output joins every other process's
    return command + listen(config.host, config.mlflow_port)


def artifact_options(config: StackConfig) -> list[str]:
    """Local: clients write to the shared directory the CLI also uses. A destination (s3://...):
    MLflow proxies every artifact to it, so only the server needs the bucket's credentials."""
    if config.artifacts_destination:
        return ["--serve-artifacts", "--artifacts-destination", config.artifacts_destination]
    return ["--default-artifact-root", (config.home / "mlartifacts").as_uri(), "--no-serve-artifacts"]


def evidently_command(config: StackConfig) -> list[str]:
    """Evidently's UI on the workspace every report of the flows is added to."""
    command = [executable("evidently"), "ui", "--workspace", str(config.workspace)]
    return command + listen(config.host, config.evidently_port)


def ports(config: StackConfig) -> dict[str, int]:
    """The port each process listens on (the worker listens on none)."""
    return {
        "mlflow": config.mlflow_port,
        "prefect": config.prefect_port,
        "evidently": config.evidently_port,
        "web": config.service_port,
    }


def bootstrap_command(config: StackConfig, train: bool, redeploy: bool) -> list[str]:
    command = [sys.executable, "-m", "clinrisk.stack.bootstrap", "--pool", config.pool]
    command += ["--project-dir", str(config.project_dir), "--ready-file", str(config.ready_file)]
    return command + ([] if train else ["--no-train"]) + (["--redeploy"] if redeploy else [])


def web_command(config: StackConfig) -> list[str]:
    command = [executable("clinrisk"), "serve", "--workers", str(config.web_workers)]
    return command + listen(config.host, config.service_port)


def worker_command(config: StackConfig) -> list[str]:
    return [executable("prefect"), "worker", "start", "--pool", config.pool, "--type", "process"]


def supervisor(
    config: StackConfig,
    env: dict[str, str],
    train: bool = True,
    redeploy: bool = False,
    secrets: dict[str, dict[str, str]] | None = None,
):
    """A supervisor for every process of the stack, not started yet; `secrets` are each
    process's own variables (clinrisk.stack.control_plane.service_environments)."""
    from clinrisk.stack.supervisor import Service, Supervisor

    port_of, secrets = ports(config), secrets or {}
    planned = commands(config, train, redeploy)
    services = [
        Service(name, command, port_of.get(name), env=secrets.get(name, {}))
        for name, command in planned.items()
    ]
    next(s for s in services if s.name == "worker").required_until = config.ready_file
    return Supervisor(services, env, config.project_dir, config.run_dir)


def run(supervisor) -> int:
    """Supervise every process until Ctrl-C or SIGTERM, then kill any straggler; the exit code."""
    try:
        return supervisor.run()
    finally:
        kill_leftovers(supervisor.run_dir)


def kill_leftovers(run_dir: Path) -> None:
    """SIGKILL each recorded process group and process still running (a no-op after a clean stop)."""
    for pid_file in [*run_dir.glob("*.pgid"), *run_dir.glob("*.pid")]:
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            pid = int(pid_file.read_text().strip())
            if pid_file.suffix == ".pgid":
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
