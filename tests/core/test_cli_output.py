"""What a real `clinrisk` process prints on stderr: our summary and errors, no library chatter."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from clinrisk import library_logs
from support import RAW_STROKE, REPO, write_fast_spec

# Lines MLflow, alembic, onnxruntime and the warnings module printed on a real `clinrisk train`.
LIBRARY_NOISE = [
    r"INFO mlflow",
    r"INFO alembic",
    r"Successfully registered model",
    r"Created version '",
    r"already exists\. Creating a new version",
    r"UserWarning",
    r"warnings\.warn",
    r"onnxruntime",
]


def run_cli(*args: str, home, specs, **variables: str) -> subprocess.CompletedProcess:
    """Run `clinrisk ARGS` as its own process on the given state and spec directories."""
    env = {
        **os.environ,
        "CLINRISK_HOME": str(home),
        "CLINRISK_SPEC_DIR": str(specs),
        "PYTHONPATH": str(REPO / "src"),
        **variables,
    }
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-c", "from clinrisk.cli import main; main()", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def sample(tmp_path):
    """A 2,000-row sample of the real stroke file with every stroke (249) kept."""
    frame = pd.read_csv(RAW_STROKE, dtype=str, keep_default_na=False)
    strokes = frame[frame["stroke"] == "1"]
    others = frame[frame["stroke"] == "0"].sample(2000 - len(strokes), random_state=0)
    path = tmp_path / "sample.csv"
    pd.concat([strokes, others]).sample(frac=1, random_state=0).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_train_prints_its_summary_and_no_library_noise(tmp_path, sample):
    """Twice (a new registered model, then a new version): one summary line on stderr, JSON last."""
    specs = write_fast_spec(tmp_path / "specs")
    for seed, version in (("1", "1"), ("2", "2")):
        done = run_cli("train", "--data", str(sample), "--seed", seed, home=tmp_path / "home", specs=specs)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["version"] == version
        assert done.stderr.splitlines() == [done.stderr.splitlines()[0]], done.stderr
        assert done.stderr.startswith(f"stroke version {version} (logistic_regression): ")
        assert not [pattern for pattern in LIBRARY_NOISE if re.search(pattern, done.stderr)], done.stderr


@pytest.mark.slow
def test_verbose_restores_the_libraries_lines(tmp_path, sample):
    """`clinrisk -v train` shows MLflow's INFO log and its registration prints again."""
    specs = write_fast_spec(tmp_path / "specs")
    done = run_cli("-v", "train", "--data", str(sample), home=tmp_path / "home", specs=specs)
    assert done.returncode == 0, done.stderr
    assert "INFO mlflow" in done.stderr
    assert "Successfully registered model 'stroke'." in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "{tmp}/missing.csv"], "error: file not found: {tmp}/missing.csv"),
        (["predict", "--input", "{tmp}/missing.csv", "--output", "{tmp}/out.csv"], "error: "),
        (["promote", "7"], "error: "),
    ],
)
def test_our_errors_still_reach_stderr_with_a_non_zero_exit(tmp_path, args, message):
    """A missing file or version is one clear `error:` line on stderr, with no traceback."""
    specs = write_fast_spec(tmp_path / "specs")
    args = [arg.format(tmp=tmp_path) for arg in args]
    done = run_cli(*args, home=tmp_path / "home", specs=specs)
    assert done.returncode != 0
    assert message.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "variable, path",
    [
        ("CLINRISK_HOME", "x.*"),
        ("CLINRISK_HOME", "run?"),
        ("CLINRISK_HOME", "[clinic]"),
        ("CLINRISK_EVIDENTLY_WORKSPACE", "ws*"),
    ],
)
def test_a_state_path_evidently_would_read_as_a_pattern_is_refused_before_anything_runs(
    tmp_path, sample, variable, path
):
    """A glob character in the Evidently workspace path: one `error:` naming the variable, nothing made."""
    specs = write_fast_spec(tmp_path / "specs")
    home = tmp_path / (path if variable == "CLINRISK_HOME" else "home")
    extra = {variable: str(tmp_path / path)} if variable != "CLINRISK_HOME" else {}
    done = run_cli("train", "--data", str(sample), home=home, specs=specs, **extra)
    assert done.returncode != 0
    assert f"{variable}: the Evidently workspace" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not home.exists()  # refused before the state directory or a registry was made


@pytest.fixture
def logger_level():
    """Set a logger's level for one test (setLevel, which also clears logging's cache)."""
    saved = {}

    def set_level(name: str, level: int) -> None:
        saved.setdefault(name, logging.getLogger(name).level)
        logging.getLogger(name).setLevel(level)

    yield set_level
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_mlflow_registration_prints_are_dropped_and_other_lines_kept(capsys, logger_level):
    """Only the registration prints go when MLflow's logger is quiet; a warning passes through."""
    logger_level("mlflow", logging.WARNING)
    with library_logs.without_mlflow_prints():
        print("Successfully registered model 'stroke'.", file=sys.stderr)
        print("Registered model 'stroke' already exists. Creating a new version...", file=sys.stderr)
        print("Created version '2' of model 'stroke'.", file=sys.stderr)
        print("2026/12/06 WARNING mlflow.models: the artifact store is slow", file=sys.stderr)
    assert capsys.readouterr().err == "2026/12/06 WARNING mlflow.models: the artifact store is slow\n"


def test_mlflow_registration_prints_stay_when_its_logger_shows_info(capsys, logger_level):
    """With MLflow at INFO (`-v`, or MLFLOW_LOGGING_LEVEL=INFO) nothing is dropped."""
    logger_level("mlflow", logging.INFO)
    with library_logs.without_mlflow_prints():
        print("Created version '2' of model 'stroke'.", file=sys.stderr)
    assert capsys.readouterr().err == "Created version '2' of model 'stroke'.\n"


@pytest.mark.parametrize("level, severity", [(logging.WARNING, 2), (logging.ERROR, 3)])
def test_onnxruntime_sessions_follow_the_onnxruntime_logger(logger_level, level, severity):
    """Sessions log warnings unless the CLI quieted the `onnxruntime` logger (then errors only)."""
    logger_level("onnxruntime", level)
    assert library_logs.onnxruntime_severity() == severity
