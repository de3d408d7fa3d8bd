"""Helpers shared by the test suite: free ports, waiting for servers, real server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAW_STROKE = REPO / "data" / "raw" / "healthcare-dataset-stroke-data.csv"

# The first patient of the real stroke file, as a client would POST it.
PATIENT = {
    "gender": "Male",
    "age": 67,
    "hypertension": 0,
    "heart_disease": 1,
    "ever_married": "Yes",
    "work_type": "Private",
    "Residence_type": "Urban",
    "avg_glucose_level": 228.69,
    "bmi": 36.6,
    "smoking_status": "formerly smoked",
}
# A diabetic patient as a client sends them to the diabetes model, by API name.
DIABETIC = {
    "pregnancies": 3,
    "glucose": 200,
    "blood_pressure": 100,
    "skin_thickness": 50,
    "insulin": 200,
    "bmi": 40,
    "diabetes_pedigree_function": 0.5,
    "age": 55,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers below 500; fail early if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def prefect_api_call(method: str, url: str, auth_string: str | None = None, **kwargs) -> requests.Response:
    """Call the Prefect REST API, retrying 429/502/503 as Prefect's own client does.

    A Prefect server on SQLite answers 503 while its database is briefly locked by the scheduler.
    With `auth_string` (PREFECT_API_AUTH_STRING), the call logs in and carries a CSRF token.
    """
    from clinrisk.stack.control_plane import PrefectApi

    api = PrefectApi(url[: url.index("/api") + len("/api")], auth_string)
    for attempt in range(6):
        response = api.request(method, url, timeout=30, **kwargs)
        if response.status_code not in (429, 502, 503):
            break
        time.sleep(2**attempt * 0.5)
    response.raise_for_status()
    return response


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a process group started with start_new_session=True: TERM, then KILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextmanager
def mlflow_server(workdir: Path, *options: str, env: dict[str, str] | None = None):
    """A real `mlflow server` with an SQLite backend and proxied local artifacts.

    `options` go before the others (e.g. `--app-name basic-auth`); `env` is added to the environment.
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    command = [
        str(VENV_BIN / "mlflow"),
        "server",
        *options,
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (workdir / "mlflow-server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=120, process=process)
        yield url
    finally:
        stop_process(process)
        log.close()


def write_fast_spec(directory: Path, **training) -> Path:
    """A copy of the stroke spec with one quick candidate and 3 folds, for tests that train often."""
    raw = yaml.safe_load((REPO / "models" / "stroke.yaml").read_text())
    raw["data"]["path"] = str(RAW_STROKE)
    raw["candidates"] = [c for c in raw["candidates"] if c["name"] == "logistic_regression"]
    raw["training"].update({"cv_folds": 3, **training})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stroke.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return directory


def first_api_record(spec, path) -> dict:
    """The first row of a data file as a request body: API names, JSON types."""
    import pandas as pd

    from clinrisk.data import read_table, validate_frame

    frame = validate_frame(read_table(path, spec), spec, require_target=False)
    row = frame[spec.feature_names].iloc[0]
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def write_fifth_model(directory) -> None:
    """A made-up kidney model: its own data (mapped column names, a category, a flag) and spec."""
    import numpy as np
    import pandas as pd

    from clinrisk.spec import file_sha256

    rng = np.random.default_rng(7)
    rows = 600
    age = rng.uniform(20, 90, rows)
    creatinine = rng.lognormal(0, 0.4, rows)
    diabetic = rng.integers(0, 2, rows)
    sex = rng.choice(["F", "M"], rows)
    logit = -6 + 0.05 * age + 1.5 * creatinine + 0.8 * diabetic + 0.3 * (sex == "M")
    outcome = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    data = directory / "kidney.csv"
    pd.DataFrame(
        {
            "Patient Age": age.round(1),
            "Creatinine (mg/dL)": creatinine.round(2),
            "DM": diabetic,
            "Sex": sex,
            "CKD": outcome,
        }
    ).to_csv(data, index=False)
    spec = {
        "name": "kidney",
        "data": {"path": str(data), "sha256": file_sha256(data)},
        "target": {"column": "CKD"},
        "features": {
            "age": {"type": "numeric", "column": "Patient Age", "min": 0, "max": 120},
            "creatinine": {"type": "numeric", "column": "Creatinine (mg/dL)", "min": 0.1, "max": 20},
            "diabetic": {"type": "binary", "column": "DM", "query_aliases": ["dm"]},
            "sex": {"type": "categorical", "column": "Sex", "categories": ["F", "M"]},
        },
        "objective": {"precision_floor": 0.3, "safety_margin": 0.02},
        "training": {"cv_folds": 3},
        "candidates": [
            {
                "name": "logistic_regression",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"class_weight": "balanced", "max_iter": 1000},
            }
        ],
    }
    (directory / "kidney.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


# Credentials moto accepts; boto3 in tests never sees a real account's.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@contextmanager
def moto_server():
    """moto's server mode (S3, ECR, ECS, ELBv2, IAM, Logs over real HTTP) on a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_client(service: str):
    """A boto3 client for checking what a test created (endpoint: AWS_ENDPOINT_URL, i.e. moto)."""
    import boto3

    return boto3.client(service, region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"])
