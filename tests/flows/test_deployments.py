"""prefect.yaml as shipped: deployed with `prefect deploy --all` to a real server, run by a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from clinrisk import registry
from clinrisk.monitoring.index import read_summaries
from monitoring.samples import drifted, trained_store
from support import REPO, VENV_BIN, free_port, prefect_api_call, stop_process, wait_for_http

POOL = "clinrisk-pool"


def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}


def test_prefect_yaml_declares_the_four_deployments_on_one_process_pool():
    """It deploys retrain weekly, monitor daily and ingest every 15 minutes on the process pool,
    pulling no code from elsewhere."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = deployments()
    assert set(found) == {"retrain", "monitor", "batch-score", "ingest"}
    assert found["ingest"]["schedules"][0]["interval"] == 900
    assert {d["work_pool"]["name"] for d in found.values()} == {POOL}
    assert found["retrain"]["schedules"][0]["cron"] == "0 3 * * 1"
    assert found["monitor"]["schedules"][0]["cron"] == "0 6 * * *"
    assert "schedules" not in found["batch-score"]
    steps = [next(iter(step)) for step in config["pull"] + config["build"]]
    assert steps == [
        "prefect.deployments.steps.set_working_directory",
        "prefect.deployments.steps.run_shell_script",
    ]
    for deployment in found.values():
        assert (REPO / deployment["entrypoint"].split(":")[0]).is_file()
        assert "tracking_uri" not in str(deployment["parameters"]) and "://" not in str(
            deployment["parameters"]
        )


def server_env(workdir: Path, port: int) -> dict[str, str]:
    """The environment of a Prefect server on SQLite in `workdir`, and of its clients."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


@contextmanager
def background(args: list[str], env: dict, log_path: Path):
    """A `prefect` command running in its own process group, stopped on exit."""
    log = log_path.open("w")
    process = subprocess.Popen(
        [str(VENV_BIN / "prefect"), *args],
        env=env,
        cwd=log_path.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def wait_for_pool(env: dict, timeout: float = 120) -> None:
    """Wait until the worker has created its work pool."""
    wait_for_http(f"{env['PREFECT_API_URL']}/work_pools/{POOL}", timeout=timeout)


def prefect(env: dict, *args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "prefect"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def api(env: dict, method: str, path: str, **body) -> dict | list:
    """One call to the Prefect REST API of the server in `env`."""
    return prefect_api_call(method, f"{env['PREFECT_API_URL']}{path}", json=body or None).json()


def run_deployment(env: dict, deployment: str, **parameters) -> str:
    """Create a run of a deployment, as `prefect deployment run` does; returns its id."""
    found = api(env, "GET", f"/deployments/name/{deployment}")
    return api(env, "POST", f"/deployments/{found['id']}/create_flow_run", parameters=parameters)["id"]


def wait_for_final_state(env: dict, flow_runs: dict, timeout: float = 480) -> list[dict]:
    """Poll until the flow runs matching the `flow_runs` filter exist and have all finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api(env, "POST", "/flow_runs/filter", flow_runs=flow_runs)
        if runs and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"flow runs {flow_runs} did not finish within {timeout} s")


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_a_worker_runs_the_retrain_that_monitor_triggered(tmp_path, raw_stroke):
    """It deploys prefect.yaml from the project root; a worker runs monitor, then the retrain it started."""
    port = free_port()
    env = server_env(tmp_path / "prefect", port)
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(server_args, env, tmp_path / "server.log") as server:
        store = trained_store(tmp_path / "store")  # trains while the server migrates its database
        drifted(raw_stroke).to_csv(tmp_path / "drifted.csv", index=False)
        # The drifted patients' outcomes arrive as a lab batch: the triggered retrain learns from them.
        labels = drifted(raw_stroke).assign(id=lambda f: f["id"] + 1_000_000)
        (store.home / "inbox" / "stroke").mkdir(parents=True)
        labels.to_csv(store.home / "inbox" / "stroke" / "drifted-outcomes.csv", index=False)
        store_env = {
            "CLINRISK_HOME": str(store.home),
            "CLINRISK_SPEC_DIR": str(store.spec_dir),
            "MLFLOW_TRACKING_URI": store.tracking_uri,
        }
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=240, process=server)
        worker_args = ["worker", "start", "--pool", POOL, "--type", "process"]
        with background(worker_args, env | store_env, tmp_path / "worker.log"):
            wait_for_pool(env)  # the worker creates the process pool that prefect.yaml names
            prefect(env, "--no-prompt", "deploy", "--all")
            monitor_id = run_deployment(env, "monitor/monitor", current_path=str(tmp_path / "drifted.csv"))
            (monitored,) = wait_for_final_state(env, {"id": {"any_": [monitor_id]}})
            retrains = wait_for_final_state(env, {"tags": {"all_": ["auto-retrain"]}})
    log = (tmp_path / "worker.log").read_text()[-4000:]
    assert monitored["state_type"] == "COMPLETED" and len(retrains) == 1, log
    assert retrains[0]["state_type"] == "COMPLETED", log
    # Newest first: the first summary of each kind is the latest (training the store wrote one too).
    summaries = {s["kind"]: s for s in reversed(read_summaries(store.reports_dir))}
    assert summaries["monitor"]["retrain"]["flow_run"]["id"] == retrains[0]["id"]
    assert summaries["retrain"]["model_version"] == "2" and summaries["retrain"]["champion_version"] == "1"
    tags = registry.version_tags(store, "stroke", "2")
    assert json.loads(tags["data.by_source"]) == {"seed": 5110, "batch:drifted-outcomes.csv": 1000}
    assert tags["gate.decision"] in ("promoted", "rejected") and tags["gate.compared_with"] == "1"
