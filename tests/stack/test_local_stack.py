"""`clinrisk up` end to end: the real servers on free ports, a prediction, a restart after MLflow
is killed, a monitor run from the CLI shown in Evidently's UI, a retrain run by Prefect, then
Ctrl-C, and nothing left running. The first champions (stroke and diabetes) train on fast specs."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests
import yaml
from proctable import alive, command_line, descendants, with_environment
from test_readme import readme_curls_for

from clinrisk import credentials
from clinrisk.bundle import PROMOTION_TAG
from clinrisk.stack.control_plane import mlflow_call
from support import PATIENT, RAW_STROKE, REPO, VENV_BIN, free_port, prefect_api_call, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Stack:
    process: subprocess.Popen
    home: Path
    log: Path
    service: str
    mlflow: str
    prefect_api: str
    evidently: str
    ports: dict[str, int]

    @property
    def auth(self) -> tuple[str, str]:
        return "admin", (self.home / "admin-password").read_text().strip()

    @property
    def secrets(self) -> dict[str, str]:
        """The control plane's credentials `clinrisk up` generated."""
        return credentials.load(self.home)

    @property
    def writer(self) -> tuple[str, str]:
        return credentials.WRITER, self.secrets["MLFLOW_WRITER_PASSWORD"]

    def prefect(self, method: str, path: str, **kwargs) -> requests.Response:
        """An authenticated Prefect API call, as the worker and the CLI make them."""
        auth_string = self.secrets["PREFECT_SERVER_API_AUTH_STRING"]
        return prefect_api_call(method, f"{self.prefect_api}{path}", auth_string=auth_string, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_stack(tmp_path: Path, spec_dir: Path) -> Stack:
    """Run `clinrisk up` on free ports and a fresh state directory."""
    home = tmp_path / "stack-home"
    ports = {"web": free_port(), "mlflow": free_port(), "prefect": free_port(), "evidently": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "CLINRISK_"))}
    env |= {"CLINRISK_HOME": str(home), "CLINRISK_SPEC_DIR": str(spec_dir)}
    env |= {"PREFECT_WORKER_QUERY_SECONDS": "2"}  # pick the triggered run up sooner than every 10 s
    env |= {"CLINRISK_POLL_INTERVAL_SECONDS": "2"}  # the service sees a new champion sooner
    command = [str(VENV_BIN / "clinrisk"), "up", "--web-workers", "1"]
    command += ["--service-port", str(ports["web"]), "--mlflow-port", str(ports["mlflow"])]
    command += ["--prefect-port", str(ports["prefect"]), "--evidently-port", str(ports["evidently"])]
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Stack(
        process, home, log, f"http://127.0.0.1:{ports['web']}",
        f"http://127.0.0.1:{ports['mlflow']}", f"http://127.0.0.1:{ports['prefect']}/api",
        f"http://127.0.0.1:{ports['evidently']}", ports,
    )  # fmt: skip


def with_fast_diabetes(spec_dir: Path) -> Path:
    """`spec_dir` with a second model, diabetes, that trains in seconds (logistic regression only)."""
    raw = yaml.safe_load((REPO / "models" / "diabetes.yaml").read_text())
    raw["data"]["path"] = str(REPO / raw["data"]["path"])
    raw["candidates"] = [c for c in raw["candidates"] if c["name"] == "logistic_regression"]
    raw["training"]["cv_folds"] = 3
    (spec_dir / "diabetes.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec_dir


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


def run_deployment(stack: Stack, name: str, timeout: float = 360) -> dict:
    """Create a flow run of deployment `flow/model` through the Prefect API and wait for its end."""
    found = deployment_id(stack, name)
    run = stack.prefect("POST", f"/deployments/{found}/create_flow_run", json={})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.prefect("GET", f"/flow_runs/{run.json()['id']}").json()["state"]
        if state["type"] in TERMINAL_STATES:
            return state
        time.sleep(2)
    raise AssertionError(f"flow run of {name} did not finish within {timeout} s:\n{stack.output()[-4000:]}")


def deployment_id(stack: Stack, name: str) -> str:
    """The id of deployment `flow/model`."""
    response = stack.prefect("GET", f"/deployments/name/{name}")
    assert response.status_code == 200, f"deployment {name} is not registered: {response.text}"
    return response.json()["id"]


def registered_versions(stack: Stack) -> list[str]:
    response = requests.get(
        f"{stack.mlflow}/api/2.0/mlflow/model-versions/search",
        params={"filter": "name='stroke'"},
        auth=stack.writer,
        timeout=30,
    )
    response.raise_for_status()
    return sorted(v["version"] for v in response.json().get("model_versions", []))


def banner(stack: Stack) -> str:
    output = stack.output()
    return output[output.index("clinrisk stack is up") :]


def check_banner(stack: Stack) -> None:
    """The banner names every URL and the new password; the reports index it links to exists."""
    text = banner(stack)
    urls = (stack.service, f"{stack.service}/docs", stack.mlflow, stack.prefect_api.removesuffix("/api"))
    for url in (*urls, stack.evidently):
        assert url in text
    assert (stack.home / "reports" / "index.html").as_uri() in text
    assert (stack.home / "reports" / "index.html").is_file()
    assert re.search(rf"password {re.escape(stack.auth[1])} \(shown once\)", text)
    # Initialisation trained a first champion for every spec (diabetes as quickly as stroke).
    assert "  diabetes  champion version 1" in text.splitlines()
    assert "  stroke    champion version 1" in text.splitlines()


def new_shell_env(stack: Stack) -> dict[str, str]:
    """A new terminal in the project root: none of the stack's variables but its state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "CLINRISK_"))}
    return env | {"CLINRISK_HOME": str(stack.home)}


def run_in_new_shell(stack: Stack, command: str) -> dict:
    """Run a pasted command in a new shell in the project root; the JSON it printed."""
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=new_shell_env(stack), capture_output=True, text=True
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    return json.loads(result.stdout)


def wait_until_every_model_is_served(stack: Stack, timeout: float = 90) -> list[dict]:
    """GET /models until every model is ready (the workers load the non-default ones just after)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = requests.get(f"{stack.service}/models", auth=stack.auth, timeout=30).json()["models"]
        if all(m["status"] == "ready" for m in listed) or time.monotonic() > deadline:
            return listed
        time.sleep(1)


def check_banner_and_readme_curls_work_as_written(stack: Stack) -> None:
    """The banner's curl command, and the README's (on this stack's port and home), answer: a
    prediction each, and the list of models."""
    lines = banner(stack).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("curl "))
    answer = run_in_new_shell(stack, "\n".join(line.strip() for line in lines[start : start + 2]))
    assert 0.0 <= answer["probability"] <= 1.0
    assert {m["status"] for m in wait_until_every_model_is_served(stack)} == {"ready"}
    curls = readme_curls_for(stack.service, stack.home)
    answers = [run_in_new_shell(stack, command) for command in curls]
    predictions = [a for a in answers if "probability" in a]
    listings = [a for a in answers if "models" in a]
    assert len(curls) == 4 and len(predictions) == 3 and len(listings) == 1, answers
    assert all(0.0 <= a["probability"] <= 1.0 for a in predictions)
    assert {a["model"]["name"] for a in predictions} == {"stroke", "diabetes"}
    assert {m["name"] for m in listings[0]["models"]} == {"stroke", "diabetes"}


def check_recorded_pids_hold_the_ports(stack: Stack) -> None:
    """Each recorded pid is the process listening on its service's port."""
    for name, port in stack.ports.items():
        pid = int((stack.home / "run" / f"{name}.pid").read_text())
        listening = {c.laddr.port for c in psutil.Process(pid).net_connections() if c.status == "LISTEN"}
        assert port in listening, (name, pid, command_line(pid))


def check_a_killed_mlflow_is_restarted_while_the_service_answers(stack: Stack) -> None:
    """kill -9 of MLflow's recorded pid: a line says it is restarted, predictions keep coming, it is back."""
    pid = int((stack.home / "run" / "mlflow.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while "mlflow the process holding port" not in stack.output() and "mlflow exited" not in stack.output():
        assert time.monotonic() < deadline, stack.output()[-3000:]
        time.sleep(0.5)
    assert "restarting it in" in stack.output()
    assert predict(stack, PATIENT).status_code == 200
    while True:
        try:
            if requests.get(f"{stack.mlflow}/health", timeout=5).ok:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, stack.output()[-3000:]
        time.sleep(1)
    assert predict(stack, PATIENT).status_code == 200
    assert stack.process.poll() is None


def check_monitor_from_the_cli_shows_in_evidently(stack: Stack, tmp_path: Path) -> None:
    """`clinrisk flows run monitor` from a new shell runs on the stack; its report is in Evidently's UI."""
    recent = tmp_path / "recent.csv"
    pd.read_csv(RAW_STROKE, dtype=str).sample(400, random_state=0).to_csv(recent, index=False)
    command = [str(VENV_BIN / "clinrisk"), "flows", "run", "monitor", "--wait"]
    command += ["--param", f"current_path={recent}", "--param", "trigger_retrain=false"]
    result = subprocess.run(command, cwd=REPO, env=new_shell_env(stack), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr + stack.output()[-3000:]
    assert "ended COMPLETED" in result.stdout
    assert "  Monitoring stroke version 1:" in result.stdout  # the run's one-line outcome, read back
    projects = requests.get(f"{stack.evidently}/api/projects", timeout=30).json()
    (project,) = [p for p in projects if p["name"] == "clinrisk-stroke"]
    reports = requests.get(f"{stack.evidently}/api/projects/{project['id']}/reports", timeout=30).json()
    assert len(reports) >= 1
    assert "Monitoring stroke version 1:" in stack.output()  # the flow's one-line outcome


def check_prediction(stack: Stack) -> None:
    """A POSTed patient gets a probability from the first champion."""
    response = predict(stack, PATIENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["model"] == {"name": "stroke", "version": "1"}


def check_retrain(stack: Stack) -> None:
    """With a labelled batch in the inbox, the retrain deployment runs on the stack's worker, ingests
    it, registers version 2 (an unchanged store would be skipped) and says who started it."""
    import pandas as pd

    inbox = stack.home / "inbox" / "stroke"
    inbox.mkdir(parents=True, exist_ok=True)
    batch = pd.read_csv(RAW_STROKE, na_values=["N/A"]).sample(60, random_state=4)
    batch.assign(id=batch["id"] + 1_000_000).to_csv(inbox / "lab.csv", index=False)
    state = run_deployment(stack, "retrain/stroke")
    assert state["type"] == "COMPLETED", f"{state}\n{stack.output()[-4000:]}"
    assert registered_versions(stack) == ["1", "2"]
    assert (inbox / "done" / "lab.csv").is_file()
    assert "Retrain of stroke: version 2" in stack.output()
    assert "(started by: Prefect UI or API (manual run))" in stack.output()


def check_anonymous_clients_change_nothing(stack: Stack) -> None:
    """Without the stack's credentials (or with the web service's read-only account) no client can
    register a version, move `champion` or start a flow; the credentials file is the owner's only."""
    assert (stack.home / credentials.CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    reader = (credentials.READER, stack.secrets["MLFLOW_READER_PASSWORD"])
    run_id = requests.get(
        f"{stack.mlflow}/api/2.0/mlflow/model-versions/get",
        params={"name": "stroke", "version": "1"},
        auth=reader,  # the service's account reads
        timeout=30,
    ).json()["model_version"]["run_id"]
    version = {"name": "stroke", "source": f"runs:/{run_id}/model", "run_id": run_id}
    alias = {"name": "stroke", "alias": "champion", "version": "1"}
    for who, refused in ((None, 401), (reader, 403), ((credentials.WRITER, "wrong-password-123"), 401)):
        for path, body in (("model-versions/create", version), ("registered-models/alias", alias)):
            answer = mlflow_call(stack.mlflow, f"2.0/mlflow/{path}", body, who)
            assert answer.status_code == refused, (who, path, answer.text)
    deployment = deployment_id(stack, "retrain/stroke")
    for path, body in (
        (f"/deployments/{deployment}/create_flow_run", {}),
        ("/flow_runs/", {"flow_id": deployment}),
    ):
        # 403: Prefect's CSRF check answers before its auth check (a CSRF token needs a login too)
        assert requests.post(f"{stack.prefect_api}{path}", json=body, timeout=30).status_code in (401, 403)
    assert requests.get(f"{stack.prefect_api}/deployments/{deployment}", timeout=30).status_code == 401
    assert requests.post(f"{stack.evidently}/api/projects", json={"name": "x"}, timeout=30).status_code in (
        401,
        403,
    )


def check_a_promotion_from_a_new_shell_is_signed_by_the_writer_and_served(stack: Stack) -> None:
    """`clinrisk promote 2` pasted into a new shell logs in with the stack's credentials, records
    the writer account as who moved `champion`, and the read-only service hot-swaps to it."""
    command = [str(VENV_BIN / "clinrisk"), "promote", "2", "--reason", "auth test"]
    result = subprocess.run(command, cwd=REPO, env=new_shell_env(stack), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    tags = requests.get(
        f"{stack.mlflow}/api/2.0/mlflow/model-versions/get",
        params={"name": "stroke", "version": "2"},
        auth=stack.writer,
        timeout=30,
    ).json()["model_version"]["tags"]
    record = json.loads(next(t["value"] for t in tags if t["key"] == PROMOTION_TAG))
    assert record["by"] == credentials.WRITER
    deadline = time.monotonic() + 120
    while predict(stack, PATIENT).json()["model"]["version"] != "2":
        assert time.monotonic() < deadline, stack.output()[-3000:]
        time.sleep(1)


def check_state_is_the_owners_only(stack: Stack) -> None:
    """The state directory is 0700 and its databases, secrets and reports are its owner's only."""
    assert stat.S_IMODE(stack.home.stat().st_mode) == 0o700
    private = ["predictions.db", "mlflow.db", "mlflow-auth.db", "credentials.env", "users.json"]
    private += [str(p.relative_to(stack.home)) for p in (stack.home / "reports").rglob("*")]
    loose = {name: oct(stat.S_IMODE((stack.home / name).stat().st_mode)) for name in private}
    assert {name: mode for name, mode in loose.items() if int(mode, 8) & 0o077} == {}


def check_ctrl_c_stops_everything(stack: Stack) -> None:
    """SIGINT (Ctrl-C) stops every process of the stack, `up` exits 0, the ports are free."""
    started = descendants(stack.process.pid) | with_environment("CLINRISK_HOME", str(stack.home))
    assert len(started) >= 5, [command_line(pid) for pid in started]
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(60) == 0, stack.output()[-3000:]
    time.sleep(0.5)
    left = {pid for pid in started if alive(pid)} | with_environment("CLINRISK_HOME", str(stack.home))
    assert not left, "\n".join(command_line(pid) for pid in left)
    for url in (stack.service, stack.mlflow, stack.prefect_api, stack.evidently):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
    # Other shells are told to start the stack rather than sent to the stopped servers.
    assert not (stack.home / "stack.json").exists() and not (stack.home / "run" / "ready").exists()


def test_up_serves_restarts_monitors_retrains_and_stops_without_leftovers(tmp_path, fast_settings):
    """It comes up with a champion, answers a patient, restarts a killed MLflow, monitors from the CLI
    into Evidently's UI, retrains through Prefect, and Ctrl-C stops all.

    One scenario rather than one test per step: the steps share one stack (a minute and a half
    to start) and must run in this order.
    """
    stack = start_stack(tmp_path, with_fast_diabetes(fast_settings.spec_dir))
    try:
        wait_until_up(stack)
        check_banner(stack)
        check_prediction(stack)
        check_banner_and_readme_curls_work_as_written(stack)
        check_recorded_pids_hold_the_ports(stack)
        check_a_killed_mlflow_is_restarted_while_the_service_answers(stack)
        check_monitor_from_the_cli_shows_in_evidently(stack, tmp_path)
        check_retrain(stack)
        check_anonymous_clients_change_nothing(stack)
        check_a_promotion_from_a_new_shell_is_signed_by_the_writer_and_served(stack)
        check_state_is_the_owners_only(stack)
        check_ctrl_c_stops_everything(stack)
    finally:
        if stack.process.poll() is None:
            stop_process(stack.process, timeout=60)
