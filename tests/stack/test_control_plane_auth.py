"""The control plane refuses anonymous changes: MLflow's basic-auth app and Prefect's auth string,
started with the stack's own settings (clinrisk.stack.control_plane)."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest
import requests

from clinrisk import credentials
from clinrisk.stack.config import StackConfig, environment
from clinrisk.stack.control_plane import PrefectApi, ensure_mlflow_accounts, mlflow_call, service_environments
from support import VENV_BIN, free_port, mlflow_server, stop_process, wait_for_http


@pytest.fixture(scope="module")
def stack_secrets(tmp_path_factory) -> tuple[StackConfig, dict[str, str]]:
    """A state directory with generated credentials, as `make up` leaves it."""
    home = tmp_path_factory.mktemp("control-plane")
    credentials.generate(home)
    return StackConfig(home=home, project_dir=home, prefect_port=free_port()), credentials.load(home)


@pytest.fixture(scope="module")
def mlflow_auth_url(stack_secrets):
    """`mlflow server --app-name basic-auth` with the stack's settings and accounts."""
    config, values = stack_secrets
    env = service_environments(config, values)["mlflow"]
    with mlflow_server(config.home / "server", "--app-name", "basic-auth", env=env) as url:
        ensure_mlflow_accounts(url, values)
        ensure_mlflow_accounts(url, values)  # a restart of the stack runs it again
        yield url


def call(url: str, path: str, body: dict, auth: tuple[str, str] | None) -> requests.Response:
    return mlflow_call(url, f"2.0/mlflow/{path}", body, auth)


@pytest.mark.slow
def test_an_unauthenticated_mlflow_client_cannot_register_or_move_an_alias(mlflow_auth_url, stack_secrets):
    """It answers 401/403 to anonymous and read-only clients that try to change the registry."""
    _, values = stack_secrets
    writer = (credentials.WRITER, values["MLFLOW_WRITER_PASSWORD"])
    reader = (credentials.READER, values["MLFLOW_READER_PASSWORD"])
    assert call(mlflow_auth_url, "registered-models/create", {"name": "stroke"}, writer).ok
    experiment = call(mlflow_auth_url, "experiments/create", {"name": "clinrisk-stroke"}, writer)
    run = call(
        mlflow_auth_url, "runs/create", {"experiment_id": experiment.json()["experiment_id"]}, writer
    ).json()["run"]["info"]["run_id"]
    version = {"name": "stroke", "source": f"runs:/{run}/model", "run_id": run}
    assert call(mlflow_auth_url, "model-versions/create", version, writer).ok
    alias = {"name": "stroke", "alias": "champion", "version": "1"}
    assert call(mlflow_auth_url, "registered-models/alias", alias, writer).ok

    for who in (None, reader, (credentials.WRITER, "wrong password")):
        assert call(mlflow_auth_url, "registered-models/alias", alias, who).status_code in (401, 403)
        assert call(mlflow_auth_url, "model-versions/create", version, who).status_code in (401, 403)
    champion = {"name": "stroke", "alias": "champion"}
    read = f"{mlflow_auth_url}/api/2.0/mlflow/registered-models/alias"
    assert requests.get(read, params=champion, timeout=10).status_code == 401
    assert (
        requests.get(read, params=champion, auth=reader, timeout=10).json()["model_version"]["version"] == "1"
    )


@pytest.mark.slow
def test_an_unauthenticated_prefect_client_cannot_create_a_flow_run(stack_secrets, tmp_path):
    """It answers 401 to API calls without PREFECT_API_AUTH_STRING, and serves those with it; CORS
    admits the UI's own origin only (the stack's settings)."""
    config, values = stack_secrets
    port = config.prefect_port
    env = {**os.environ, **environment(config), **service_environments(config, values)["prefect"]}
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
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
        auth_string = credentials.client_environment(values, "writer")["PREFECT_API_AUTH_STRING"]
        token = {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
        assert requests.get(f"{api}/admin/version", headers=token, timeout=10).status_code == 200
        # CSRF protection is on: even an authenticated POST needs the CSRF token Prefect's clients fetch.
        no_csrf = requests.post(f"{api}/deployments/filter", json={}, headers=token, timeout=10)
        assert no_csrf.status_code == 403
        assert (
            PrefectApi(api, auth_string).post(f"{api}/deployments/filter", json={}, timeout=10).json() == []
        )
        preflight = {"Access-Control-Request-Method": "POST"}
        for origin, allowed in ((config.prefect_url, True), ("http://evil.example", False)):
            answer = requests.options(
                f"{api}/flow_runs/", headers={**preflight, "Origin": origin}, timeout=10
            )
            assert (answer.headers.get("access-control-allow-origin") == origin) is allowed
    finally:
        stop_process(process)
        log.close()
