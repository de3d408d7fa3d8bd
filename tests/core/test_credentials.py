"""Stack secrets: generated privately, and refused when weak on an exposed address."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from clinrisk.credentials import SECRETS, generate, refuse_weak
from clinrisk.errors import ClinriskError
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


@pytest.mark.parametrize("value", ["predictions", "admin", "changeme", "short", "admin:admin"])
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
