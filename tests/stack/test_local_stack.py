"""`clinrisk up` end to end: the real servers on free ports, a prediction, a retrain run by
Prefect, then Ctrl-C, and nothing left running. The first champion trains on the fast spec."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from proctable import alive, command_line, descendants, with_environment

from support import PATIENT, RAW_STROKE, REPO, VENV_BIN, free_port, prefect_api_call, stop_process

pytestmark = pytest.mark.slow

TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Stack:
    process: subprocess.Popen
    home: Path
    log: Path
    service: str
    mlflow: str
    prefect_api: str

    @property
    def auth(self) -> tuple[str, str]:
        return "admin", (self.home / "admin-password").read_text().strip()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_stack(tmp_path: Path, spec_dir: Path) -> Stack:
    """Run `clinrisk up` on free ports and a fresh state directory."""
    home = tmp_path / "stack-home"
    ports = {"service": free_port(), "mlflow": free_port(), "prefect": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "CLINRISK_"))}
    env |= {"CLINRISK_HOME": str(home), "CLINRISK_SPEC_DIR": str(spec_dir)}
    env |= {"PREFECT_WORKER_QUERY_SECONDS": "2"}  # pick the triggered run up sooner than every 10 s
    command = [str(VENV_BIN / "clinrisk"), "up", "--web-workers", "1"]
    command += ["--service-port", str(ports["service"]), "--mlflow-port", str(ports["mlflow"])]
    command += ["--prefect-port", str(ports["prefect"])]
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Stack(
        process, home, log, f"http://127.0.0.1:{ports['service']}",
        f"http://127.0.0.1:{ports['mlflow']}", f"http://127.0.0.1:{ports['prefect']}/api",
    )  # fmt: skip


def wait_until_up(stack: Stack, timeout: float = 240) -> None:
    """Wait for the banner `clinrisk up` prints once everything answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "clinrisk stack is up" in stack.output():
            return
        if stack.process.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"the stack did not come up:\n{stack.output()[-6000:]}")


def predict(stack: Stack, patient: dict) -> requests.Response:
    return requests.post(f"{stack.service}/predict", json=patient, auth=stack.auth, timeout=30)


def run_deployment(stack: Stack, name: str, timeout: float = 180) -> dict:
    """Create a flow run of a deployment through the Prefect API and wait for its end."""
    found = prefect_api_call(
        "POST", f"{stack.prefect_api}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}}
    ).json()
    assert found, f"deployment {name} is not registered"
    run = prefect_api_call(
        "POST", f"{stack.prefect_api}/deployments/{found[0]['id']}/create_flow_run", json={}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = prefect_api_call("GET", f"{stack.prefect_api}/flow_runs/{run.json()['id']}").json()["state"]
        if state["type"] in TERMINAL_STATES:
            return state
        time.sleep(2)
    raise AssertionError(f"flow run of {name} did not finish within {timeout} s:\n{stack.output()[-4000:]}")


def registered_versions(stack: Stack) -> list[str]:
    response = requests.get(
        f"{stack.mlflow}/api/2.0/mlflow/model-versions/search", params={"filter": "name='stroke'"}, timeout=30
    )
    response.raise_for_status()
    return sorted(v["version"] for v in response.json().get("model_versions", []))


def check_banner(stack: Stack) -> None:
    """The banner names the service, docs, MLflow, Prefect and reports URLs and the new password."""
    banner = stack.output()[stack.output().index("clinrisk stack is up") :]
    for url in (stack.service, f"{stack.service}/docs", stack.mlflow, stack.prefect_api.removesuffix("/api")):
        assert url in banner
    assert (stack.home / "reports" / "index.html").as_uri() in banner
    assert re.search(rf"password {re.escape(stack.auth[1])} \(shown once\)", banner)


def check_prediction(stack: Stack) -> None:
    """A POSTed patient gets a probability from the first champion."""
    response = predict(stack, PATIENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["model"] == {"name": "stroke", "version": "1"}


def check_retrain(stack: Stack) -> None:
    """With a labelled batch in the inbox, the retrain deployment runs on the stack's worker,
    ingests it and registers version 2 (an unchanged store would be skipped)."""
    import pandas as pd

    inbox = stack.home / "inbox" / "stroke"
    inbox.mkdir(parents=True, exist_ok=True)
    batch = pd.read_csv(RAW_STROKE, na_values=["N/A"]).sample(60, random_state=4)
    batch.assign(id=batch["id"] + 1_000_000).to_csv(inbox / "lab.csv", index=False)
    state = run_deployment(stack, "retrain")
    assert state["type"] == "COMPLETED", f"{state}\n{stack.output()[-4000:]}"
    assert registered_versions(stack) == ["1", "2"]
    assert (inbox / "done" / "lab.csv").is_file()


def check_ctrl_c_stops_everything(stack: Stack) -> None:
    """SIGINT (Ctrl-C) stops every process of the stack, `up` exits 0, the ports are free."""
    started = descendants(stack.process.pid) | with_environment("CLINRISK_HOME", str(stack.home))
    assert len(started) >= 4, [command_line(pid) for pid in started]
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(60) == 0, stack.output()[-3000:]
    time.sleep(0.5)
    left = {pid for pid in started if alive(pid)} | with_environment("CLINRISK_HOME", str(stack.home))
    assert not left, "\n".join(command_line(pid) for pid in left)
    for url in (stack.service, stack.mlflow, stack.prefect_api):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)


def test_up_serves_retrains_and_stops_without_leftovers(tmp_path, fast_settings):
    """It comes up with a champion, answers a patient, retrains through Prefect, and Ctrl-C stops all.

    One scenario rather than one test per step: the steps share one stack (a minute and a half
    to start) and must run in this order.
    """
    stack = start_stack(tmp_path, fast_settings.spec_dir)
    try:
        wait_until_up(stack)
        check_banner(stack)
        check_prediction(stack)
        check_retrain(stack)
        check_ctrl_c_stops_everything(stack)
    finally:
        if stack.process.poll() is None:
            stop_process(stack.process, timeout=60)
