"""The processes of the local stack, run together by honcho: one stops, all stop.

Each process runs in its own process group (honcho starts it in a new session); honcho sends
SIGTERM to every group on Ctrl-C or SIGTERM and SIGKILL five seconds later. Each group writes
its id to `<home>/run/<name>.pid` so that, once honcho is done, any straggler is killed too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
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
        # Initialisation runs first in the worker's process, which then becomes the worker:
        # a one-shot process would make honcho stop the whole stack when it finished.
        "worker": [*bootstrap_command(config, train, redeploy), "--", *worker_command(config)],
        # The web service starts once initialisation is done, so it loads the champion at once.
        "web": [*after_init, *web_command(config)],
    }


def listen(host: str, port: int) -> list[str]:
    return ["--host", host, "--port", str(port)]


def mlflow_command(config: StackConfig) -> list[str]:
    """MLflow on the same SQLite store and artifact directory as the CLI's defaults."""
    store = f"sqlite:///{config.home / 'mlflow.db'}"
    command = [executable("mlflow"), "server", "--backend-store-uri", store, "--workers", "1"]
    command += artifact_options(config)
    command += ["--uvicorn-opts", "--no-access-log"]  # its output joins every other process's
    return command + listen(config.host, config.mlflow_port)


def artifact_options(config: StackConfig) -> list[str]:
    """Local: clients write to the shared directory the CLI also uses. A destination (s3://...):
    MLflow proxies every artifact to it, so only the server needs the bucket's credentials."""
    if config.artifacts_destination:
        return ["--serve-artifacts", "--artifacts-destination", config.artifacts_destination]
    return ["--default-artifact-root", (config.home / "mlartifacts").as_uri(), "--no-serve-artifacts"]


def bootstrap_command(config: StackConfig, train: bool, redeploy: bool) -> list[str]:
    command = [sys.executable, "-m", "clinrisk.stack.bootstrap", "--pool", config.pool]
    command += ["--project-dir", str(config.project_dir), "--ready-file", str(config.ready_file)]
    return command + ([] if train else ["--no-train"]) + (["--redeploy"] if redeploy else [])


def web_command(config: StackConfig) -> list[str]:
    command = [executable("clinrisk"), "serve", "--workers", str(config.web_workers)]
    return command + listen(config.host, config.service_port)


def worker_command(config: StackConfig) -> list[str]:
    return [executable("prefect"), "worker", "start", "--pool", config.pool, "--type", "process"]


def shell_line(config: StackConfig, name: str, command: list[str]) -> str:
    """The line honcho runs: record the process group id, then become the command."""
    pid_file = shlex.quote(str(config.run_dir / f"{name}.pid"))
    return f"echo $$ > {pid_file} && exec {shlex.join(command)}"


def run(config: StackConfig, env: dict[str, str], train: bool = True, redeploy: bool = False) -> int:
    """Run every process until Ctrl-C, SIGTERM or the first exit; return honcho's exit code."""
    from honcho.manager import Manager
    from honcho.printer import Printer

    manager = Manager(Printer(sys.stdout))
    for name, command in commands(config, train, redeploy).items():
        manager.add_process(name, shell_line(config, name, command), env=env, cwd=str(config.project_dir))
    try:
        manager.loop()
    finally:
        kill_leftovers(config.run_dir)
    return manager.returncode or 0


def kill_leftovers(run_dir: Path) -> None:
    """SIGKILL what is left of each recorded process group (a no-op when honcho stopped them all)."""
    for pid_file in run_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
