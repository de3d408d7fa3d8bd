"""The parts of `clinrisk up` that need no server: commands, ports, leftovers, deployments."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner
from proctable import alive

from clinrisk.cli import main
from clinrisk.errors import ClinriskError
from clinrisk.settings import load_settings
from clinrisk.stack import bootstrap, processes
from clinrisk.stack.accounts import ensure_admin
from clinrisk.stack.command import describe
from clinrisk.stack.config import StackConfig, environment, prepare_home
from support import REPO, free_port


@pytest.fixture
def config(tmp_path) -> StackConfig:
    return StackConfig(
        home=tmp_path / "home",
        project_dir=REPO,
        service_port=18000,
        mlflow_port=15000,
        prefect_port=14200,
        evidently_port=18001,
    )


def test_each_process_listens_on_its_configured_port(config):
    """It starts MLflow, Prefect, Evidently's UI and the web service on the ports given."""
    commands = processes.commands(config)
    assert list(commands) == ["mlflow", "prefect", "evidently", "worker", "web"]
    for name, port in (("mlflow", "15000"), ("prefect", "14200"), ("evidently", "18001"), ("web", "18000")):
        assert commands[name][commands[name].index("--port") + 1] == port


def test_mlflow_serves_the_store_the_cli_uses_by_default(config, monkeypatch):
    """It points the MLflow server at the same SQLite file and artifact directory as `clinrisk train`."""
    monkeypatch.setenv("CLINRISK_HOME", str(config.home))
    defaults = load_settings()
    command = processes.commands(config)["mlflow"]
    assert command[command.index("--backend-store-uri") + 1] == defaults.tracking_uri
    assert command[command.index("--default-artifact-root") + 1] == defaults.artifact_root


def test_evidently_ui_reads_the_workspace_the_flows_write(config, monkeypatch):
    """It points Evidently's UI at the settings' workspace, where every report is added."""
    monkeypatch.setenv("CLINRISK_HOME", str(config.home))
    command = processes.commands(config)["evidently"]
    assert command[command.index("--workspace") + 1] == str(load_settings().evidently_workspace)


def test_usage_data_collection_is_off_for_mlflow_as_for_prefect(config):
    """It turns MLflow's telemetry off wherever Prefect's analytics are off."""
    env = environment(config)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["DO_NOT_TRACK"] == "true"


def test_the_reports_index_exists_from_the_start(config):
    """It writes an empty reports index before any flow has run, so the banner's link works."""
    prepare_home(config)
    assert "No report yet" in config.reports_index.read_text()
    assert json.loads(config.urls_file.read_text())["prefect_api_url"] == config.prefect_api_url


def test_a_stopped_stack_is_forgotten_by_other_shells(config, monkeypatch):
    """After the stack stops, `clinrisk flows run` says to start it instead of calling dead servers."""
    from click.testing import CliRunner

    from clinrisk.cli import main
    from clinrisk.stack.config import forget_stack, read_urls

    prepare_home(config)
    config.ready_file.write_text("{}")
    assert read_urls(config.home)["prefect_api_url"] == config.prefect_api_url
    forget_stack(config)
    assert read_urls(config.home) == {} and not config.ready_file.exists()
    forget_stack(config)  # twice is fine (a second Ctrl-C)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("CLINRISK_HOME", str(config.home))
    result = CliRunner().invoke(main, ["flows", "run", "monitor"])
    assert result.exit_code == 1 and "no Prefect server: start the stack (make up)" in result.stderr


def test_every_process_shares_one_state_directory(config):
    """It gives every process the same CLINRISK_HOME, tracking server and Prefect API."""
    env = environment(config)
    assert env["CLINRISK_HOME"] == str(config.home)
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:14200/api"
    assert env["PREFECT_HOME"].startswith(str(config.home))


def test_the_worker_initialises_before_it_starts(config):
    """It runs the bootstrap first and becomes the Prefect worker after `--`."""
    command = processes.commands(config, train=False)["worker"]
    separator = command.index("--")
    assert command[1:3] == ["-m", "clinrisk.stack.bootstrap"] and "--no-train" in command[:separator]
    assert command[separator + 2 : separator + 4] == ["worker", "start"]


def test_up_refuses_a_port_in_use_and_names_the_option(tmp_path):
    """It exits 1 before starting anything when a port is taken, naming the option that moves it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["up", "--mlflow-port", str(port), "--service-port", str(free_port())]
        )
    assert result.exit_code == 1
    assert f"port {port}" in result.output and "--mlflow-port" in result.output


def test_leftover_process_groups_are_killed(tmp_path):
    """It kills every recorded process group that is still running after the stack stopped."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (run_dir / "straggler.pid").write_text(f"{child.pid}\n")
    processes.kill_leftovers(run_dir)
    child.wait(10)
    assert not alive(child.pid) and not list(run_dir.iterdir())


def test_a_new_start_forgets_the_previous_readiness(config):
    """It removes the readiness marker and pid files a previous run left."""
    prepare_home(config)
    config.ready_file.touch()
    (config.run_dir / "web.pid").write_text("1")
    (config.run_dir / "web.pgid").write_text("1")
    prepare_home(config)
    assert not list(config.run_dir.iterdir())


def test_deployment_names_are_prefect_yaml_flows_times_the_specs():
    """It plans each flow of prefect.yaml once per model spec, named `flow/model`."""
    names = bootstrap.deployment_names(REPO, REPO / "models")
    models = sorted(p.stem for p in (REPO / "models").glob("*.yaml"))
    flows = ("retrain", "ingest", "monitor", "batch-score")
    assert sorted(names) == sorted(f"{flow}/{model}" for flow in flows for model in models)


def test_a_missing_prefect_yaml_is_reported(tmp_path):
    """It fails with a message naming the directory when prefect.yaml is missing."""
    with pytest.raises(ClinriskError, match=str(tmp_path)):
        bootstrap.deployment_names(tmp_path, REPO / "models")


def test_one_model_failing_to_train_leaves_the_others_their_first_champion(
    fast_settings, monkeypatch, capsys
):
    """A model whose first training fails (its data file is missing) is reported by name and left
    without a champion; the others still get theirs, and a second start trains nothing again."""
    broken = yaml.safe_load((fast_settings.spec_dir / "stroke.yaml").read_text())
    broken["name"], broken["data"]["path"] = "anemia", "/nonexistent/anemia.csv"
    (fast_settings.spec_dir / "anemia.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("CLINRISK_HOME", str(fast_settings.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(fast_settings.spec_dir))
    assert bootstrap.ensure_champions(train=True) == {"anemia": None, "stroke": "1"}
    said = capsys.readouterr().out
    assert "WARNING: anemia has no champion: its first training failed" in said
    assert "/nonexistent/anemia.csv" in said and "training the first stroke model" in said
    assert bootstrap.ensure_champions(train=False) == {"anemia": None, "stroke": "1"}
    assert "stroke has a champion: version 1" in capsys.readouterr().out


def test_every_model_failing_to_train_fails_the_start(fast_settings, monkeypatch):
    """When no model can be trained the cause is shared (here MLflow does not answer): the start fails."""
    fast_settings.home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("CLINRISK_HOME", str(fast_settings.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(fast_settings.spec_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(ClinriskError, match=r"no model could be trained: .*stroke"):
        bootstrap.ensure_champions(train=True)


def test_the_banner_lists_every_model_and_its_champion(config):
    """It names each model with its champion version, or says it has none yet."""
    text = describe(config, None, True, "stroke", champions={"anemia": None, "stroke": "1"})
    lines = text.splitlines()
    assert "  anemia  no champion yet" in lines
    assert "  stroke  champion version 1" in lines
    longest = {"diabetes_progression": "2", "stroke": "1"}  # the column fits the longest name
    lines = describe(config, None, True, "stroke", champions=longest).splitlines()
    assert "  diabetes_progression  champion version 2" in lines
    assert "  stroke                champion version 1" in lines


def test_waiting_for_a_server_that_never_answers_names_it():
    """It gives up after the timeout, naming the server and its URL."""
    url = f"http://127.0.0.1:{free_port()}/api/health"
    started = time.monotonic()
    with pytest.raises(ClinriskError, match="the Prefect API did not answer"):
        bootstrap.wait_for(url, "the Prefect API", timeout=1)
    assert time.monotonic() - started < 30


def test_no_account_is_created_when_auth_is_off(tmp_path):
    """It creates no user and reports none when authentication is disabled."""
    settings = load_settings(home=tmp_path / "home", auth_enabled=False)
    assert ensure_admin(settings, dict(os.environ)) is None
    assert not settings.users_file.exists()


def test_the_first_start_creates_an_admin_with_a_private_password(tmp_path):
    """It creates `admin` once, with a generated password only its owner can read."""
    settings = load_settings(home=tmp_path / "home")
    settings.ensure_home()
    env = {**os.environ, "CLINRISK_HOME": str(settings.home)}
    first = ensure_admin(settings, env)
    again = ensure_admin(settings, env)
    assert first.new_password and first.password_file.read_text().strip() == first.new_password
    assert stat.S_IMODE(first.password_file.stat().st_mode) == 0o600
    assert settings.users_file.exists()
    assert again.new_password is None and again.password_file == first.password_file


def test_the_web_service_starts_after_initialisation(config):
    """It holds the web service back until the bootstrap has written the ready file."""
    command = processes.commands(config)["web"]
    assert command[1:4] == ["-m", "clinrisk.stack.after", str(config.ready_file)]
    assert command[command.index("--") + 2] == "serve"


def test_a_held_command_runs_once_the_ready_file_appears(tmp_path):
    """It waits while the ready file is missing, then becomes the command."""
    ready, marker = tmp_path / "ready", tmp_path / "ran"
    held = subprocess.Popen(
        [sys.executable, "-m", "clinrisk.stack.after", str(ready), "--", "touch", str(marker)]
    )
    time.sleep(1.5)
    assert held.poll() is None and not marker.exists()
    ready.write_text("{}")
    assert held.wait(20) == 0 and marker.exists()


@pytest.mark.parametrize(("setting", "accesslog"), [(None, "None"), ("true", "-"), ("false", "None")])
def test_the_access_log_is_quiet_unless_asked_for(tmp_path, setting, accesslog):
    """It logs no line per request by default, so the stack's banner stays on screen."""
    env = {k: v for k, v in os.environ.items() if k != "CLINRISK_ACCESS_LOG"}
    env["CLINRISK_HOME"] = str(tmp_path)
    if setting is not None:
        env["CLINRISK_ACCESS_LOG"] = setting
    code = "import clinrisk.web.gunicorn_conf as conf; print(conf.accesslog)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == accesslog
