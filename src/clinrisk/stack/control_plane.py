"""The stack's control plane, locked: MLflow's basic-auth app, Prefect's auth string, Evidently's secret.

`clinrisk up` generates the secrets once into `<CLINRISK_HOME>/credentials.env` (0600, see
clinrisk.credentials) and gives each process only those it needs (`service_environments`).
The initialisation creates the two MLflow accounts with the admin password
(`ensure_mlflow_accounts`): the writer (training, promotion, the worker's flows, the CLI) may
change experiments and registered models; the reader (the web service) may only read them.
Nobody else has any permission (`default_permission = NO_PERMISSIONS`).

Prefect's server checks `PREFECT_SERVER_API_AUTH_STRING` on every API call but /health, with
CSRF protection on: `PrefectApi` is a requests session that sends both, as Prefect's own client
does (the `Prefect-Csrf-Token` and `Prefect-Csrf-Client` headers, see prefect/client/base.py).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Mapping

import requests

from clinrisk.credentials import READER, WRITER, client_environment, mlflow_auth_config
from clinrisk.errors import ClinriskError
from clinrisk.stack.config import StackConfig

MLFLOW_ADMIN = "admin"  # admin_username of the auth config
# Wildcard grants, so that models and experiments created later need no new grant.
GRANTS = {WRITER: "MANAGE", READER: "READ"}
RESOURCE_TYPES = ("experiment", "registered_model")
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def service_environments(config: StackConfig, values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The secrets each process of the local stack gets, by process name.

    The worker's initialisation also gets the admin and account passwords to create the
    accounts; it drops them before it becomes the worker (clinrisk.stack.bootstrap).
    """
    auth_config = mlflow_auth_config(
        config.home / "mlflow-auth.ini", f"sqlite:///{config.home / 'mlflow-auth.db'}"
    )
    accounts = {
        name: values[name]
        for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_WRITER_PASSWORD", "MLFLOW_READER_PASSWORD")
    }
    return {
        "mlflow": {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": values["MLFLOW_AUTH_ADMIN_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": values["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        },
        "prefect": {
            "PREFECT_SERVER_API_AUTH_STRING": values["PREFECT_SERVER_API_AUTH_STRING"],
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
        },
        "evidently": {"EVIDENTLY_SECRET": values["EVIDENTLY_SECRET"]},
        "worker": {**client_environment(values, "writer"), **accounts},
        "web": client_environment(values, "reader"),
    }


def mlflow_call(url: str, path: str, body: dict, auth: tuple[str, str] | None, method: str = "POST"):
    """One MLflow REST call (`path` below /api/) with exactly these credentials, no retries."""
    sent = {"params": body} if method == "GET" else {"json": body}
    return requests.request(method, f"{url.rstrip('/')}/api/{path}", auth=auth, timeout=60, **sent)


def ensure_mlflow_accounts(url: str, values: Mapping[str, str]) -> None:
    """Create (or reset the password of) the writer and the reader, and grant their permissions.

    `values` holds MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_WRITER_PASSWORD and MLFLOW_READER_PASSWORD.
    Raises ClinriskError when MLflow refuses the admin account.
    """
    admin = (MLFLOW_ADMIN, values["MLFLOW_AUTH_ADMIN_PASSWORD"])
    passwords = {WRITER: values["MLFLOW_WRITER_PASSWORD"], READER: values["MLFLOW_READER_PASSWORD"]}
    for user, password in passwords.items():
        account = {"username": user, "password": password}
        answer = mlflow_call(url, "2.0/mlflow/users/create", account, admin)
        if answer.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in answer.text:
            answer = mlflow_call(url, "2.0/mlflow/users/update-password", account, admin, "PATCH")
        check(answer, f"creating the MLflow account {user}")
        for resource_type in RESOURCE_TYPES:
            grant = {"username": user, "resource_type": resource_type, "resource_id": "*"}
            grant["permission"] = GRANTS[user]
            answer = mlflow_call(url, "3.0/mlflow/users/permissions/grant", grant, admin)
            if answer.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in answer.text:
                continue  # granted on an earlier start
            check(answer, f"granting {GRANTS[user]} on every {resource_type} to {user}")


def check(answer: requests.Response, what: str) -> None:
    """Fail naming the step; a 401 means the auth database holds another admin password."""
    if answer.status_code == 401:
        raise ClinriskError(
            f"{what}: MLflow refused the admin account; its auth database was created with "
            "another MLFLOW_AUTH_ADMIN_PASSWORD"
        )
    if not answer.ok:
        raise ClinriskError(f"{what}: MLflow answered {answer.status_code}: {answer.text[:200]}")


class PrefectApi(requests.Session):
    """A session to Prefect's REST API with its auth string and, for changes, a CSRF token."""

    def __init__(self, api_url: str, auth_string: str | None) -> None:
        super().__init__()
        self.api_url = api_url.rstrip("/")
        self.client_id = str(uuid.uuid4())
        self.csrf: dict[str, str] | None = None
        if auth_string:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()

    def request(self, method, url, *args, **kwargs):
        if method.upper() in CHANGES:
            kwargs["headers"] = {**self.csrf_headers(), **(kwargs.get("headers") or {})}
        return super().request(method, url, *args, **kwargs)

    def csrf_headers(self) -> dict[str, str]:
        """A CSRF token for this client, fetched once; none when the server does not ask for it."""
        if self.csrf is None:
            answer = self.get(f"{self.api_url}/csrf-token", params={"client": self.client_id}, timeout=30)
            token = answer.json().get("token") if answer.ok else None
            self.csrf = {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": self.client_id} if token else {}
        return self.csrf


def prefect_api(api_url: str) -> PrefectApi:
    """A session to `api_url` with this process's PREFECT_API_AUTH_STRING (none when unset)."""
    return PrefectApi(api_url, os.environ.get("PREFECT_API_AUTH_STRING"))
