"""Helpers of the web tests: a sample patient, real gunicorn services and a trained registry."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from sqlalchemy import func, select

from support import DIABETIC as DIABETIC  # re-exported to this folder's tests
from support import PATIENT as PATIENT
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
        # One signing key per registry (beside its specs): the trainer signs, every service verifies.
        CLINRISK_SIGNING_KEY_FILE=str(Path(spec_dir).parent / "signing.key"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
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

    def wait_until_every_worker_serves(self, names, timeout: float = 120) -> None:
        """Until each gunicorn worker has logged a champion of every named model.

        Each worker loads its own, the models after the default one off its start-up path, and
        asking /ready a few times does not prove every worker was asked: which worker accepts a
        connection is the kernel's choice.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = [child.pid for child in psutil.Process(self.process.pid).children()]
            log = self.log.read_text()
            if workers and all(
                re.search(rf"\[{pid}\] \[INFO\] serving {name} version ", log)
                for pid in workers
                for name in names
            ):
                return
            time.sleep(0.25)
        raise TimeoutError(f"not every worker served each of {names} within {timeout} s")


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


@contextmanager
def alices_service(home: Path, spec_dir: Path, tracking_uri: str, **settings: str) -> Iterator[Service]:
    """`clinrisk serve` (gunicorn, 2 workers, auth on) with a user alice (PASSWORD and an API key,
    kept as `service.api_key`); `settings` as in `service_env`."""
    from clinrisk.web.users import add_api_key, add_user

    home.mkdir(parents=True, exist_ok=True)
    add_user(home / "users.json", "alice", PASSWORD)
    key = add_api_key(home / "users.json", "alice")
    with gunicorn_service(service_env(home, spec_dir, tracking_uri, **settings)) as service:
        service.api_key = key
        yield service


def postgres_bindir() -> Path | None:
    """Where PostgreSQL's server programs are: `pg_config --bindir`, else PATH, else Debian's layout."""
    import glob
    import shutil

    candidates = []
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(result.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _server_user() -> str | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root, which initdb refuses."""
    import pwd

    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster in a temporary directory, and its SQLAlchemy URL.

    Skips (naming what was searched) only when PostgreSQL is not installed at all;
    `tools/system-packages.sh` installs it, and `make test` runs that first.
    """
    import pwd
    import shutil
    import tempfile

    import pytest

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed: no initdb/pg_ctl from `pg_config --bindir`, on PATH or in "
            "/usr/lib/postgresql/*/bin (run `make system-packages`)"
        )
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="clinrisk-web-pg-"))
    if user is not None:
        owner = pwd.getpwnam(user)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()

    def run(program: str, *args: str) -> None:
        command = [str(bindir / program), *args]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "clinrisk", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        try:
            yield f"postgresql+psycopg2://clinrisk@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def post(url: str, body, **kwargs) -> requests.Response:
    return requests.post(url, json=body, timeout=60, **kwargs)


def rows_in(engine, table) -> int:
    """How many rows a table of the prediction log (or any SQLAlchemy table) holds."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def reload_gunicorn_conf(monkeypatch, home: Path):
    """The gunicorn configuration module, imported afresh for CLINRISK_HOME=`home`.

    It reads the settings at import and sets defaults in the environment, which are undone here.
    """
    monkeypatch.setenv("CLINRISK_HOME", str(home))
    saved = dict(os.environ)
    try:
        return importlib.reload(importlib.import_module("clinrisk.web.gunicorn_conf"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
