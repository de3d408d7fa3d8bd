"""The control plane refuses anonymous changes: MLflow's basic-auth app and Prefect's auth string."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest
import requests

from clinrisk.credentials import mlflow_auth_config
from clinrisk.stack.config import StackConfig, environment
from support import VENV_BIN, free_port, mlflow_server, stop_process, wait_for_http

ADMIN_PASSWORD = "admin-" + "a" * 20
PREFECT_AUTH = "clinrisk:" + "p" * 24


@pytest.fixture(scope="module")
def mlflow_auth_url(tmp_path_factory):
    """`mlflow server --app-name basic-auth` with our config: nobody has permissions by default."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = mlflow_auth_config(root / "basic_auth.ini", f"sqlite:///{root / 'auth.db'}")
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
    }
    with mlflow_server(root / "server", "--app-name", "basic-auth", env=env) as url:
        yield url


def mlflow_call(url: str, path: str, body: dict, auth: tuple[str, str] | None) -> requests.Response:
    """One MLflow REST call with exactly these credentials (no client state, no retries)."""
    return requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, auth=auth, timeout=60)


@pytest.mark.slow
def test_an_unauthenticated_mlflow_client_cannot_register_or_move_an_alias(mlflow_auth_url):
    """It answers 401/403 to anonymous and read-only clients that try to change the registry."""
    admin = ("admin", ADMIN_PASSWORD)
    trainer, web = ("trainer", "trainer-" + "t" * 20), ("web", "web-" + "w" * 20)
    for user, password in (trainer, web):
        assert mlflow_call(
            mlflow_auth_url, "users/create", {"username": user, "password": password}, admin
        ).ok
    assert mlflow_call(mlflow_auth_url, "registered-models/create", {"name": "stroke"}, trainer).ok
    experiment = mlflow_call(mlflow_auth_url, "experiments/create", {"name": "clinrisk-stroke"}, trainer)
    run = mlflow_call(
        mlflow_auth_url, "runs/create", {"experiment_id": experiment.json()["experiment_id"]}, trainer
    ).json()["run"]["info"]["run_id"]
    version = {"name": "stroke", "source": f"runs:/{run}/model", "run_id": run}
    assert mlflow_call(mlflow_auth_url, "model-versions/create", version, trainer).ok
    alias = {"name": "stroke", "alias": "champion", "version": "1"}
    assert mlflow_call(mlflow_auth_url, "registered-models/alias", alias, trainer).ok

    for who in (None, web, ("trainer", "wrong password")):
        assert mlflow_call(mlflow_auth_url, "registered-models/alias", alias, who).status_code in (401, 403)
        assert mlflow_call(mlflow_auth_url, "model-versions/create", version, who).status_code in (401, 403)
    answer = requests.get(
        f"{mlflow_auth_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": "stroke", "alias": "champion"},
        timeout=10,
    )
    assert answer.status_code == 401


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
