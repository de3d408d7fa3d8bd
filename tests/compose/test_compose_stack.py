"""`docker compose up` end to end: PostgreSQL behind MLflow, Prefect and the prediction log,
a prediction from the champion, a retrain run through the Prefect API with its report."""

from __future__ import annotations

import time

import pytest
import requests

from support import REPO, prefect_api_call

pytestmark = pytest.mark.compose

PUBLISHED = {"proxy": 8000, "mlflow": 5000, "prefect-server": 4200, "evidently-ui": 8000}
# The proxy publishes the prediction service on CLINRISK_WEB_PORT (the fixture's port "web").
PORT_KEY = {"proxy": "web"}
PATIENT = {
    "gender": "Female",
    "age": 79,
    "hypertension": 1,
    "heart_disease": 0,
    "ever_married": "Yes",
    "work_type": "Self-employed",
    "Residence_type": "Rural",
    "avg_glucose_level": 174.12,
    "bmi": 24.0,
    "smoking_status": "never smoked",
}
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
REPORTS_DIR = "/data/clinrisk/reports"


def wait_for_ready(url: str, timeout: float = 120) -> None:
    """Poll `url` until it answers 200 (the service has loaded its champion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise AssertionError(f"{url} was not ready within {timeout} s")


def predict_once_every_worker_is_ready(stack, auth, timeout: float = 180) -> requests.Response:
    """POST the patient until no gunicorn worker answers 503 any more (each loads the champion on
    its own; /ready answers from whichever worker got the probe); the last answer."""
    wait_for_ready(f"{stack.url('web')}/ready")
    deadline = time.monotonic() + timeout
    while True:
        response = requests.post(f"{stack.url('web')}/predict", json=PATIENT, auth=auth, timeout=30)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(2)


def psql(stack, database: str, query: str) -> str:
    return stack.exec("postgres", "psql", "-U", "postgres", "-d", database, "-At", "-c", query).strip()


def wait_for_row(stack, query: str, timeout: float = 60) -> str:
    """Poll the predictions database until `query` returns a row; that row as psql prints it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if row := psql(stack, "predictions", query):
            return row
        time.sleep(1)
    raise AssertionError(f"no row for {query!r} within {timeout} s")


def deployment_id(prefect_api: str, auth_string: str, name: str) -> str:
    """The id of deployment `flow/model` (404 fails the call: not registered)."""
    return prefect_api_call("GET", f"{prefect_api}/deployments/name/{name}", auth_string).json()["id"]


def run_deployment(prefect_api: str, auth_string: str, name: str, timeout: float = 600) -> dict:
    """Create a flow run of deployment `flow/model` through the authenticated API; wait for its end."""
    found = deployment_id(prefect_api, auth_string, name)
    run = prefect_api_call("POST", f"{prefect_api}/deployments/{found}/create_flow_run", auth_string, json={})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = prefect_api_call("GET", f"{prefect_api}/flow_runs/{run.json()['id']}", auth_string).json()
        if flow_run["state"]["type"] in TERMINAL_STATES:
            return flow_run
        time.sleep(3)
    raise AssertionError(f"the {name} flow run did not finish within {timeout} s")


def model_versions(stack) -> dict[str, dict]:
    response = requests.get(
        f"{stack.url('mlflow')}/api/2.0/mlflow/model-versions/search",
        params={"filter": "name='stroke'"},
        auth=("clinrisk-writer", stack.env["MLFLOW_WRITER_PASSWORD"]),
        timeout=30,
    )
    response.raise_for_status()
    return {v["version"]: v for v in response.json().get("model_versions", [])}


def test_every_service_is_healthy_and_init_succeeded(compose_stack):
    """It brings every service to healthy and the one-shot init to exit code 0."""
    assert compose_stack.inspect("init")["State"]["ExitCode"] == 0
    for service in ("postgres", "mlflow", "prefect-server", "prefect-worker", "web", "proxy", "evidently-ui"):
        assert compose_stack.inspect(service)["State"]["Health"]["Status"] == "healthy", service


@pytest.mark.parametrize("service", ["postgres", "init", "prefect-worker", "web"])
def test_internal_services_publish_no_port(compose_stack, service):
    """It publishes no port of PostgreSQL, the worker, init or the web replicas (behind the proxy)."""
    bindings = compose_stack.inspect(service)["HostConfig"]["PortBindings"] or {}
    assert not bindings


@pytest.mark.parametrize("service", sorted(PUBLISHED))
def test_user_facing_ports_are_bound_to_loopback(compose_stack, service):
    """It publishes each user-facing port on 127.0.0.1 only."""
    bindings = compose_stack.inspect(service)["HostConfig"]["PortBindings"]
    assert list(bindings) == [f"{PUBLISHED[service]}/tcp"]
    assert bindings[f"{PUBLISHED[service]}/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(compose_stack.ports[PORT_KEY.get(service, service)])}
    ]


@pytest.mark.parametrize("service", ["mlflow", "prefect-server", "prefect-worker", "web", "evidently-ui"])
def test_python_services_run_as_a_non_root_user(compose_stack, service):
    """It runs every Python service as the unprivileged `clinrisk` user."""
    assert compose_stack.exec(service, "id", "-un").strip() == "clinrisk"


def test_postgres_holds_the_three_databases(compose_stack):
    """It creates one database each for MLflow, Prefect and the prediction log, used by their services:
    init registered every spec's deployments and gave every model a first champion."""
    databases = set(psql(compose_stack, "postgres", "SELECT datname FROM pg_database").split())
    assert {"mlflow", "prefect", "predictions"} <= databases
    specs = len(list((REPO / "models").glob("*.yaml")))
    assert psql(compose_stack, "mlflow", "SELECT count(*) FROM registered_models") == str(specs)
    champions = "SELECT count(*) FROM registered_model_aliases WHERE alias = 'champion'"
    assert psql(compose_stack, "mlflow", champions) == str(specs)
    assert int(psql(compose_stack, "prefect", "SELECT count(*) FROM deployment")) == 4 * specs


def test_a_posted_patient_gets_an_answer_from_the_champion(compose_stack, auth):
    """It answers a POSTed patient with the champion's probability and logs that answer in PostgreSQL."""
    response = predict_once_every_worker_is_ready(compose_stack, auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["model"] == {"name": "stroke", "version": "1"}
    query = (
        "SELECT model_name, model_version, probability, prediction FROM predictions "
        f"WHERE prediction_id = '{body['prediction_id']}'"
    )
    row = wait_for_row(compose_stack, query)  # the log is written in batches, off the request path
    name, version, probability, prediction = row.split("|")
    assert (name, version, int(prediction)) == ("stroke", "1", body["prediction"])
    assert float(probability) == pytest.approx(body["probability"])


def test_requests_without_credentials_are_refused(compose_stack):
    """It refuses a prediction without credentials (auth is on by default)."""
    response = requests.post(f"{compose_stack.url('web')}/predict", json=PATIENT, timeout=30)
    assert response.status_code == 401


# Writes 60 real rows under new ids into the worker's inbox volume: new labels for the store
# (an unchanged store is skipped, so a retrain needs them).
NEW_LABELS = (
    "import pandas as pd; f = pd.read_csv('data/raw/healthcare-dataset-stroke-data.csv')"
    ".sample(60, random_state=4); f.assign(id=f['id'] + 1_000_000)"
    ".to_csv('/data/clinrisk/inbox/stroke/lab.csv', index=False)"
)


@pytest.fixture(scope="session")
def retrain_run(compose_stack, prefect_api, prefect_auth) -> tuple[dict, dict, dict]:
    """One run of the retrain deployment: (flow run, versions before, versions after)."""
    before = model_versions(compose_stack)
    compose_stack.exec("prefect-worker", "python", "-c", NEW_LABELS)
    flow_run = run_deployment(prefect_api, prefect_auth, "retrain/stroke")
    return flow_run, before, model_versions(compose_stack)


def test_a_retrain_through_the_prefect_api_logs_a_run_and_writes_a_report(
    compose_stack, retrain_run, mlflow_writer
):
    """It runs the retrain deployment on the worker: a new MLflow run and version, and a report file."""
    flow_run, before, after = retrain_run
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    new = [v for k, v in after.items() if k not in before]
    assert len(new) == 1
    run = requests.get(
        f"{compose_stack.url('mlflow')}/api/2.0/mlflow/runs/get",
        params={"run_id": new[0]["run_id"]},
        auth=mlflow_writer,
        timeout=30,
    ).json()["run"]
    assert run["info"]["status"] == "FINISHED"
    reports = compose_stack.exec("prefect-worker", "find", "/data/clinrisk/reports", "-name", "*.html")
    assert "/data/clinrisk/reports/index.html" in reports.split()
    assert len(reports.split()) >= 2
    done = compose_stack.exec("prefect-worker", "ls", "/data/clinrisk/inbox/stroke/done")
    assert "lab.csv" in done.split()


def test_the_evidently_ui_lists_the_reports_the_flows_saved(compose_stack, retrain_run):
    """It shows every comparison report the flows saved under the model's project, `clinrisk-stroke`."""
    assert retrain_run[0]["state"]["type"] == "COMPLETED", retrain_run[0]["state"]
    saved = compose_stack.exec(
        "prefect-worker", "find", "/data/clinrisk/reports/stroke", "-name", "report.html"
    )
    ui = compose_stack.url("evidently-ui")
    projects = {p["name"]: p["id"] for p in requests.get(f"{ui}/api/projects", timeout=30).json()}
    assert "clinrisk-stroke" in projects, projects
    listed = requests.get(f"{ui}/api/projects/{projects['clinrisk-stroke']}/reports", timeout=30).json()
    assert len(listed) == len(saved.split()) >= 1


def test_the_ui_of_each_server_answers(compose_stack):
    """It serves the MLflow (after a login), Prefect and Evidently UIs on their published ports."""
    admin = ("admin", compose_stack.env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert requests.get(compose_stack.url("mlflow"), timeout=30).status_code == 401
    assert requests.get(compose_stack.url("mlflow"), auth=admin, timeout=30).status_code == 200
    for service, path in (("prefect-server", "/"), ("evidently-ui", "/")):
        assert requests.get(f"{compose_stack.url(service)}{path}", timeout=30).status_code == 200, service


def test_an_anonymous_client_can_neither_change_the_served_model_nor_start_a_flow(
    compose_stack, auth, prefect_api, prefect_auth, mlflow_writer
):
    """Without credentials (or as the web service's read-only account) MLflow refuses a new version
    and an alias move, and Prefect a flow run; the service keeps answering from its champion."""
    mlflow = compose_stack.url("mlflow")
    reader = ("clinrisk-reader", compose_stack.env["MLFLOW_READER_PASSWORD"])
    run_id = model_versions(compose_stack)["1"]["run_id"]
    version = {"name": "stroke", "source": f"runs:/{run_id}/model", "run_id": run_id}
    alias = {"name": "stroke", "alias": "champion", "version": "1"}
    for who, refused in ((None, 401), (reader, 403), (("clinrisk-writer", "wrong-password-123"), 401)):
        for path, body in (("model-versions/create", version), ("registered-models/alias", alias)):
            answer = requests.post(f"{mlflow}/api/2.0/mlflow/{path}", json=body, auth=who, timeout=30)
            assert answer.status_code == refused, (who, path, answer.text)
    deployment = deployment_id(prefect_api, prefect_auth, "retrain/stroke")
    for path, body in (
        (f"/deployments/{deployment}/create_flow_run", {}),
        ("/flow_runs/", {"flow_id": deployment}),
    ):
        # 403: Prefect's CSRF check answers before its auth check (a CSRF token needs a login too)
        assert requests.post(f"{prefect_api}{path}", json=body, timeout=30).status_code in (401, 403)
    assert requests.get(f"{prefect_api}/deployments/{deployment}", timeout=30).status_code == 401
    project = requests.post(
        f"{compose_stack.url('evidently-ui')}/api/projects", json={"name": "x"}, timeout=30
    )
    assert project.status_code in (401, 403)
    assert predict_once_every_worker_is_ready(compose_stack, auth).ok
