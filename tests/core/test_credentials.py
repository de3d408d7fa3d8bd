"""Stack secrets: generated privately, and refused when weak on an exposed address."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from clinrisk import credentials
from clinrisk.credentials import SECRETS, generate, refuse_weak
from clinrisk.errors import ClinriskError
from clinrisk.stack.config import StackConfig
from clinrisk.stack.control_plane import service_environments
from support import REPO


def test_generated_credentials_are_private_strong_and_kept(tmp_path):
    """It writes every secret once, 0600, and keeps existing values on a second run."""
    path, added = generate(tmp_path / "home")
    assert added == list(SECRETS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    first = path.read_text()
    assert generate(tmp_path / "home") == (path, [])
    assert path.read_text() == first
    refuse_weak("0.0.0.0", dict(line.split("=", 1) for line in first.splitlines()))


@pytest.mark.parametrize(
    "value",
    [
        "predictions",
        "admin",
        "changeme",
        "short",
        "admin:admin",
        "change-me-postgres",
        "Change-Me-Prefect-Auth",
    ],
)
def test_weak_secrets_are_refused_beyond_loopback_naming_the_variable(value):
    """It names the variable (never the value) when a placeholder is exposed, and allows loopback."""
    with pytest.raises(ClinriskError, match="PREDICTIONS_DB_PASSWORD") as caught:
        refuse_weak("0.0.0.0", {"PREDICTIONS_DB_PASSWORD": value, "OTHER": "x" * 20})
    assert "OTHER" not in str(caught.value)
    refuse_weak("127.0.0.1", {"PREDICTIONS_DB_PASSWORD": value})
    refuse_weak("::1", {"PREDICTIONS_DB_PASSWORD": value})


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLINRISK_", "MLFLOW_"))}
    clean.update(env, PYTHONPATH=str(REPO / "src"), CLINRISK_SPEC_DIR=str(REPO / "models"))
    return subprocess.run([sys.executable, *args], env=clean, capture_output=True, text=True, timeout=120)


def test_clinrisk_serve_refuses_default_passwords_beyond_loopback(tmp_path):
    """`clinrisk serve --host 0.0.0.0` exits naming the variable when a password is a default."""
    result = run(
        ["-c", "from clinrisk.cli import main; main()", "serve", "--host", "0.0.0.0", "--port", "1"],
        CLINRISK_HOME=str(tmp_path),
        CLINRISK_PREDICTION_LOG_URL="postgresql+psycopg2://predictions:predictions@db:5432/predictions",
    )
    assert result.returncode == 1
    assert "CLINRISK_PREDICTION_LOG_URL" in result.stderr and ":predictions@" not in result.stderr


@pytest.mark.parametrize(
    ("variables", "address", "code"),
    [
        ({"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://mlflow:mlflow@postgres/mlflow"}, "0.0.0.0", 1),
        ({"PREFECT_SERVER_API_AUTH_STRING": "admin:admin"}, "0.0.0.0", 1),
        ({"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://mlflow:mlflow@postgres/mlflow"}, "127.0.0.1", 0),
        ({"PREFECT_SERVER_API_AUTH_STRING": "clinrisk:" + "k" * 24}, "0.0.0.0", 0),
    ],
)
def test_the_container_guard_checks_what_it_is_given(variables, address, code):
    """The guard the compose services run exits 1 on an exposed default, naming the variable."""
    result = run(
        ["-m", "clinrisk.credentials", "check", *variables], CLINRISK_PUBLISHED_ADDRESS=address, **variables
    )
    assert result.returncode == code, result.stderr
    if code:
        assert next(iter(variables)) in result.stderr


def test_commands_log_in_with_the_stack_credentials_the_environment_does_not_set(tmp_path, monkeypatch):
    """It fills in the writer's MLflow account and Prefect's auth string from credentials.env, keeps
    what the environment sets, gives `reader` no Prefect string, and does nothing without the file."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING"):
        monkeypatch.delenv(name, raising=False)
    credentials.use_stack_credentials(tmp_path)
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    generate(tmp_path)
    values = credentials.load(tmp_path)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "set-by-the-user-1234")
    credentials.use_stack_credentials(tmp_path)
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == credentials.WRITER
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == values["MLFLOW_WRITER_PASSWORD"]
    assert os.environ["PREFECT_API_AUTH_STRING"] == "set-by-the-user-1234"
    assert set(credentials.client_environment(values, "reader")) == {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }


def test_each_stack_process_gets_only_its_own_secrets(tmp_path):
    """The web service gets the read-only account only; the admin password goes to MLflow and the
    initialisation; MLflow's auth settings grant nobody anything by default and are private."""
    generate(tmp_path)
    values = credentials.load(tmp_path)
    envs = service_environments(StackConfig(home=tmp_path, project_dir=tmp_path), values)
    assert envs["web"] == {
        "MLFLOW_TRACKING_USERNAME": credentials.READER,
        "MLFLOW_TRACKING_PASSWORD": values["MLFLOW_READER_PASSWORD"],
    }
    holders = {name for name, env in envs.items() if values["MLFLOW_AUTH_ADMIN_PASSWORD"] in env.values()}
    assert holders == {"mlflow", "worker"}
    assert envs["prefect"]["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"] == "true"
    assert envs["evidently"] == {"EVIDENTLY_SECRET": values["EVIDENTLY_SECRET"]}
    ini = tmp_path / "mlflow-auth.ini"
    assert envs["mlflow"]["MLFLOW_AUTH_CONFIG_PATH"] == str(ini)
    assert "default_permission = NO_PERMISSIONS" in ini.read_text()
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
