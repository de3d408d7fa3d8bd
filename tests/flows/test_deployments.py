"""prefect.yaml as shipped: deployed with `prefect deploy --all` to a real server, run by a real worker."""

from __future__ import annotations

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
from support import REPO, VENV_BIN, free_port, stop_process, wait_for_http

POOL = "clinrisk-pool"


def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}


def test_prefect_yaml_declares_the_three_deployments_on_one_process_pool():
    """It deploys retrain weekly and monitor daily on the process pool, pulling no code from elsewhere."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = deployments()
    assert set(found) == {"retrain", "monitor", "batch-score"}
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


def wait_for_final_state(env: dict, deployment: str, tag: str, timeout: float = 480) -> dict:
    """Poll the API until a run of `deployment` with `tag` reaches a final state; return it."""
    import requests

    api, deadline = env["PREFECT_API_URL"], time.monotonic() + timeout
    found = requests.get(f"{api}/deployments/name/{deployment}", timeout=10).json()
    query = {"deployments": {"id": {"any_": [found["id"]]}}, "flow_runs": {"tags": {"all_": [tag]}}}
    while time.monotonic() < deadline:
        runs = requests.post(f"{api}/flow_runs/filter", json=query, timeout=10).json()
        final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if final:
            return final[0] | {"count": len(runs)}
        time.sleep(2)
    raise TimeoutError(f"no run of {deployment} finished within {timeout} s")


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_a_worker_runs_the_retrain_that_monitor_triggered(tmp_path, raw_stroke, monkeypatch):
    """It deploys prefect.yaml from the project root; a worker runs the retrain a drifted monitor started."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from clinrisk.flows.monitor import monitor

    port = free_port()
    env = server_env(tmp_path / "prefect", port)
    with background(
        ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "server.log"
    ) as server:
        store = trained_store(tmp_path / "store")  # trains while the server migrates its database
        drifted(raw_stroke).to_csv(tmp_path / "drifted.csv", index=False)
        clinrisk_env = {"CLINRISK_HOME": str(store.home), "CLINRISK_SPEC_DIR": str(store.spec_dir)}
        for key, value in clinrisk_env.items():
            monkeypatch.setenv(key, value)
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=240, process=server)
        worker_args = ["worker", "start", "--pool", POOL, "--type", "process"]
        with background(worker_args, {**env, **clinrisk_env}, tmp_path / "worker.log"):
            wait_for_pool(env)  # the worker creates the process pool that prefect.yaml names
            prefect(env, "--no-prompt", "deploy", "--all")
            with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
                summary = monitor(current_path=str(tmp_path / "drifted.csv"))
            assert summary["retrain"]["triggered"], summary["retrain"]
            retrain_run = wait_for_final_state(env, "retrain/retrain", "auto-retrain")
    assert retrain_run["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
    assert retrain_run["count"] == 1
    comparison = next(s for s in read_summaries(store.reports_dir) if s["kind"] == "retrain")
    assert comparison["model_version"] == "2" and comparison["champion_version"] == "1"
    assert registry.alias_version(store, "stroke", "champion") == "2"
