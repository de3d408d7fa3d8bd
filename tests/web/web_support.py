"""Helpers of the web tests: a sample patient, real gunicorn services and a trained registry."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from support import PATIENT as PATIENT  # re-exported to this folder's tests
from support import VENV_BIN, free_port, stop_process, wait_for_http

PASSWORD = "correct horse battery"


def service_env(home: Path, spec_dir: Path, tracking_uri: str, **settings: str) -> dict[str, str]:
    """A clean environment for a clinrisk process: no MLflow or clinrisk variables but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CLINRISK_", "PROMETHEUS_"))}
    env.update(
        CLINRISK_HOME=str(home),
        CLINRISK_SPEC_DIR=str(spec_dir),
        CLINRISK_TRACKING_URI=tracking_uri,
        CLINRISK_REGISTRY_URI=tracking_uri,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # One signing key per registry, as in production: the trainer signs, services verify.
        CLINRISK_SIGNING_KEY_FILE=str(Path(spec_dir).parent / "signing.key"),
    )
    env.update({f"CLINRISK_{k.upper()}": v for k, v in settings.items()})
    return env


def run_clinrisk(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """Run the `clinrisk` CLI and return its last output line (the JSON result)."""
    done = subprocess.run(
        [str(VENV_BIN / "clinrisk"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Service:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path
    api_key: str = ""

    def stop(self) -> None:
        """SIGTERM, as an orchestrator would: a graceful shutdown."""
        stop_process(self.process, timeout=60)


@contextmanager
def gunicorn_service(env: dict[str, str], *, workers: int = 2) -> Iterator[Service]:
    """`clinrisk serve` on a free port, started and stopped as a real process group."""
    home = Path(env["CLINRISK_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / f"gunicorn-{port}.log"
    command = [str(VENV_BIN / "clinrisk"), "serve", "--port", str(port), "--workers", str(workers)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        service = Service(f"http://127.0.0.1:{port}", home, process, log_path)
        try:
            wait_for_http(f"{service.url}/health", timeout=180, process=process)
            yield service
        finally:
            service.stop()


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL 15 cluster (run as the `postgres` user) and its SQLAlchemy URL."""
    import pwd
    import shutil
    import tempfile

    owner = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="clinrisk-web-pg-"))
    os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
        )

    try:
        as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "clinrisk", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"
        )
        try:
            yield f"postgresql+psycopg2://clinrisk@127.0.0.1:{port}/postgres"
        finally:
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def post(url: str, body, **kwargs) -> requests.Response:
    return requests.post(url, json=body, timeout=60, **kwargs)
