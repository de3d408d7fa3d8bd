"""The control plane refuses anonymous changes: MLflow's basic-auth app and Prefect's auth string."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest
import requests

from clinrisk.credentials import mlflow_auth_config
from clinrisk.stack.config import StackConfig, environment
from support import VENV_BIN, free_port, stop_process, wait_for_http

ADMIN_PASSWORD = "admin-" + "a" * 20
PREFECT_AUTH = "clinrisk:" + "p" * 24


@pytest.fixture(scope="module")
def mlflow_auth_url(tmp_path_factory):
    """`mlflow server --app-name basic-auth` with our config: nobody has permissions by default."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = mlflow_auth_config(root / "basic_auth.ini", f"sqlite:///{root / 'auth.db'}")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [str(VENV_BIN / "mlflow"), "server", "--app-name", "basic-auth"]
    command += [
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "a"),
    ]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (root / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=120, process=process)
        yield url
    finally:
        stop_process(process)
        log.close()


def as_user(monkeypatch, name: str | None, password: str | None = None) -> None:
    for key, value in (("MLFLOW_TRACKING_USERNAME", name), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


@pytest.mark.slow
def test_an_unauthenticated_mlflow_client_cannot_register_or_move_an_alias(mlflow_auth_url, monkeypatch):
    """It answers 401/403 to anonymous and read-only clients that try to change the registry."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    as_user(monkeypatch, "admin", ADMIN_PASSWORD)
    auth = get_app_client("basic-auth", tracking_uri=mlflow_auth_url)
    auth.create_user("trainer", "trainer-" + "t" * 20)
    auth.create_user("web", "web-" + "w" * 20)
    as_user(monkeypatch, "trainer", "trainer-" + "t" * 20)
    client = MlflowClient(mlflow_auth_url)
    client.create_registered_model("stroke")
    experiment = client.create_experiment("clinrisk-stroke")
    run = client.create_run(experiment).info.run_id
    client.create_model_version("stroke", f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias("stroke", "champion", "1")

    for user in (None, ("web", "web-" + "w" * 20), ("trainer", "wrong password")):
        as_user(monkeypatch, *(user or (None, None)))
        with pytest.raises(MlflowException) as refused:
            client.set_registered_model_alias("stroke", "champion", "1")
        assert refused.value.get_http_status_code() in (401, 403)
        with pytest.raises(MlflowException):
            client.create_model_version("stroke", f"runs:/{run}/model", run_id=run)
    as_user(monkeypatch, None)
    assert (
        requests.get(
            f"{mlflow_auth_url}/api/2.0/mlflow/registered-models/alias",
            params={"name": "stroke", "alias": "champion"},
            timeout=10,
        ).status_code
        == 401
    )


@pytest.mark.slow
def test_an_unauthenticated_prefect_client_cannot_create_a_flow_run(tmp_path):
    """It answers 401 to API calls without PREFECT_API_AUTH_STRING, and serves those with it; CORS
    admits the UI's own origin only (the stack's setting)."""
    port = free_port()
    config = StackConfig(home=tmp_path, project_dir=tmp_path, prefect_port=port)
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_API_AUTH_STRING": PREFECT_AUTH,
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": environment(config)[
            "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"
        ],
    }
    command = [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "prefect.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_http(f"{api}/health", timeout=180, process=process)
        anonymous = requests.post(
            f"{api}/flow_runs/", json={"flow_id": "00000000-0000-0000-0000-000000000000"}, timeout=10
        )
        assert anonymous.status_code in (401, 403)
        assert requests.get(f"{api}/admin/version", timeout=10).status_code == 401
        token = {"Authorization": "Basic " + base64.b64encode(PREFECT_AUTH.encode()).decode()}
        assert requests.get(f"{api}/admin/version", headers=token, timeout=10).status_code == 200
        # CSRF protection is on: even an authenticated POST needs the CSRF token Prefect's clients fetch.
        no_csrf = requests.post(f"{api}/deployments/filter", json={}, headers=token, timeout=10)
        assert no_csrf.status_code == 403
        preflight = {"Access-Control-Request-Method": "POST"}
        for origin, allowed in ((config.prefect_url, True), ("http://evil.example", False)):
            answer = requests.options(
                f"{api}/flow_runs/", headers={**preflight, "Origin": origin}, timeout=10
            )
            assert (answer.headers.get("access-control-allow-origin") == origin) is allowed
    finally:
        stop_process(process)
        log.close()
