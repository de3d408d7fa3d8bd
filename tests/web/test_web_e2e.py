"""End to end: `clinrisk serve` (real gunicorn) on a real `mlflow server` with a trained champion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from web_support import PASSWORD, PATIENT, gunicorn_service, post, run_clinrisk, service_env

from clinrisk import predlog
from support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-e2e")]


def bearer(service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.api_key}"}


def test_served_patient_gets_probability_decision_threshold_and_version(live_service):
    """It answers a POSTed patient with probability, decision, threshold and model version."""
    response = post(f"{live_service.url}/predict", PATIENT, auth=("alice", PASSWORD))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"prediction_id", "probability", "prediction", "threshold", "model"}
    assert body["prediction"] == int(body["probability"] >= body["threshold"])
    assert body["model"]["version"] == response.headers["X-Model-Version"]


def test_a_batch_is_answered_in_order(live_service):
    """It answers an array with the results of each patient, in the order sent."""
    patients = [{**PATIENT, "age": age} for age in (80, 5, 45, 62, 18)]
    batch = post(f"{live_service.url}/predict", patients, headers=bearer(live_service)).json()
    singles = [post(f"{live_service.url}/predict", p, headers=bearer(live_service)).json() for p in patients]
    assert [r["probability"] for r in batch] == pytest.approx([r["probability"] for r in singles], abs=1e-12)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"auth": ("alice", "not the password")},
        {"auth": ("nobody", PASSWORD)},
        {"headers": {"Authorization": "Bearer crk_deadbeef_forged"}},
    ],
    ids=["none", "wrong-password", "unknown-user", "wrong-key"],
)
def test_missing_or_wrong_credentials_get_401(live_service, credentials):
    """It answers 401 with a WWW-Authenticate challenge."""
    response = post(f"{live_service.url}/predict", PATIENT, **credentials)
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "field"),
    [
        (json.dumps({**PATIENT, "age": "old"}), "application/json", 422, "age"),
        (json.dumps({k: v for k, v in PATIENT.items() if k != "gender"}), "application/json", 422, "gender"),
        (json.dumps({**PATIENT, "smoking_status": "vapes"}), "application/json", 422, "smoking_status"),
        (json.dumps({**PATIENT, "bmi": 400}), "application/json", 422, "bmi"),
        (json.dumps({**PATIENT, "ssn": "123"}), "application/json", 422, "ssn"),
        (json.dumps([PATIENT, {**PATIENT, "age": -3}]), "application/json", 422, "[1].age"),
        ('{"age": 67,', "application/json", 400, "body"),
        (json.dumps(PATIENT), "text/plain", 415, "body"),
        (json.dumps([PATIENT] * 1001), "application/json", 413, "body"),
        (" " * 2_000_001, "application/json", 413, "body"),
    ],
    ids=[
        "wrong-type",
        "missing-field",
        "unknown-category",
        "out-of-range",
        "extra-field",
        "batch-item",
        "malformed-json",
        "wrong-content-type",
        "array-over-limit",
        "body-over-limit",
    ],
)
def test_invalid_input_gets_a_4xx_naming_the_field(live_service, data, content_type, status, field):
    """It answers each class of invalid input with its 4xx and a JSON list of errors with field paths."""
    headers = {**bearer(live_service), "Content-Type": content_type}
    response = requests.post(f"{live_service.url}/predict", data=data, headers=headers, timeout=60)
    assert response.status_code == status
    assert field in [problem["field"] for problem in response.json()["errors"]]


def test_model_reports_the_verified_lean_scorer(live_service):
    """It serves the lean scorer stored and verified on the real file at registration, and says so."""
    body = requests.get(f"{live_service.url}/model", headers=bearer(live_service), timeout=30).json()
    assert body["scoring_path"]["active"] in ("numpy", "tree-ensemble")
    assert body["scoring_path"]["verified_rows"] == 5110
    assert body["loaded_from"] == "registry"


def metric_total(service, name: str, **labels: str) -> float:
    text = requests.get(f"{service.url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_add_up_across_workers(live_service):
    """It counts requests and predictions of every gunicorn worker in one /metrics answer."""
    before = metric_total(live_service, "clinrisk_http_requests_total", endpoint="/predict", status="200")
    rows_before = metric_total(live_service, "clinrisk_predictions_total")
    for _ in range(12):
        post(f"{live_service.url}/predict", [PATIENT, PATIENT], headers=bearer(live_service))
    after = metric_total(live_service, "clinrisk_http_requests_total", endpoint="/predict", status="200")
    assert after - before == 12
    assert metric_total(live_service, "clinrisk_predictions_total") - rows_before == 24


def test_feedback_is_stored_in_the_prediction_log(live_service):
    """It stores an observed outcome next to the logged prediction."""
    prediction_id = post(f"{live_service.url}/predict", PATIENT, headers=bearer(live_service)).json()[
        "prediction_id"
    ]
    response = post(
        f"{live_service.url}/feedback",
        {"prediction_id": prediction_id, "outcome": 1},
        headers=bearer(live_service),
    )
    assert response.status_code == 201
    with sqlite3.connect(live_service.home / "predictions.db") as db:
        stored = db.execute(
            "select outcome from feedback where prediction_id = ?", (prediction_id,)
        ).fetchall()
    assert stored == [(1,)]


def registry_client(registry_url: str):
    """An MLflow client bound to the test registry only (no process-wide URI is set)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry_url, registry_uri=registry_url)


def register_copy_of_champion(registry_url: str) -> str:
    """A new registered version of the current champion's model (what a retraining would add)."""
    client = registry_client(registry_url)
    champion = client.get_model_version_by_alias("stroke", "champion")
    model_id = champion.model_id or champion.source.removeprefix("models:/")
    copy = client.create_model_version("stroke", champion.source, run_id=champion.run_id, model_id=model_id)
    return copy.version


def logged_versions(url: str) -> Counter:
    """Rows in the prediction log, counted by model version."""
    engine = predlog.connect(url)
    version = predlog.predictions.c.model_version
    with engine.connect() as conn:
        counts = Counter(dict(conn.execute(select(version, func.count()).group_by(version)).all()))
    engine.dispose()
    return counts


def hammer(url: str, stop: threading.Event, outcomes: list) -> None:
    """Post two patients at a time until stopped, recording status and answering version."""
    session = requests.Session()
    while not stop.is_set():
        try:
            response = session.post(f"{url}/predict", json=[PATIENT, PATIENT], timeout=30)
            versions = {r["model"]["version"] for r in response.json()} if response.ok else set()
            outcomes.append((response.status_code, versions, time.monotonic()))
        except requests.RequestException as exc:
            outcomes.append((repr(exc), set(), time.monotonic()))


def test_promotion_swaps_the_answering_version_without_failed_requests(e2e_registry, postgres_url, tmp_path):
    """It serves a promoted version within two polling intervals, fails no request and logs every row."""
    interval = 5.0  # seconds; generous beside the few seconds a worker needs to load a version
    env = service_env(
        tmp_path / "home",
        e2e_registry["spec_dir"],
        e2e_registry["url"],
        auth_enabled="false",
        poll_interval_seconds=str(interval),
        prediction_log_url=postgres_url,  # the production choice, written by both workers at once
    )
    outcomes: list = []
    with gunicorn_service(env) as service:
        new_version = register_copy_of_champion(e2e_registry["url"])
        stop = threading.Event()
        clients = [threading.Thread(target=hammer, args=(service.url, stop, outcomes)) for _ in range(4)]
        for thread in clients:
            thread.start()
        # Through the signed path (what the gate does): a bare alias move would be refused.
        trainer = service_env(e2e_registry["root"] / "trainer", e2e_registry["spec_dir"], e2e_registry["url"])
        run_clinrisk(trainer, "promote", new_version)
        promoted_at = time.monotonic()
        deadline = promoted_at + 60
        while time.monotonic() < deadline and not (
            len(outcomes) > 20 and all(v == {new_version} for _, v, _ in outcomes[-20:])
        ):
            time.sleep(0.1)
        stop.set()
        for thread in clients:
            thread.join()
        service.stop()  # graceful: every worker flushes its prediction log
    failures = [o for o in outcomes if o[0] != 200]
    assert failures == []
    first_new = min(t for _, v, t in outcomes if v == {new_version})
    assert first_new - promoted_at <= 2 * interval
    assert all(len(v) == 1 for _, v, _ in outcomes)
    assert all(v == {new_version} for _, v, _ in outcomes[-20:])
    served = Counter(version for _, v, _ in outcomes for version in v for _row in range(2))
    assert logged_versions(postgres_url) == served


def test_registry_down_at_start_serves_the_cached_champion_as_degraded(e2e_registry, live_service, tmp_path):
    """It starts from the champion cached on disk; /ready says the registry is unreachable once asked."""
    home = tmp_path / "home"
    shutil.copytree(live_service.home / "serving-cache", home / "serving-cache")
    cached = json.loads((home / "serving-cache" / "stroke" / "meta.json").read_text())["version"]
    unreachable = f"http://127.0.0.1:{free_port()}"
    env = service_env(home, e2e_registry["spec_dir"], unreachable, auth_enabled="false")
    with gunicorn_service(env, workers=1) as service:
        answer = post(f"{service.url}/predict", PATIENT)  # served from the cache at once
        deadline = time.monotonic() + 60  # the registry is asked off the start-up path
        ready = requests.get(f"{service.url}/ready", timeout=30)
        while "unreachable" not in (ready.json()["reason"] or "") and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = requests.get(f"{service.url}/ready", timeout=30)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and "unreachable" in ready.json()["reason"]
    assert answer.status_code == 200 and answer.json()["model"]["version"] == cached


def test_a_worker_started_from_the_cache_explains_once_the_registry_confirms(
    e2e_registry, live_service, tmp_path
):
    """Restarted on its serving cache (which holds no pipeline), it still explains: from the run."""
    home = tmp_path / "home"
    shutil.copytree(live_service.home / "serving-cache", home / "serving-cache")
    assert not list((home / "serving-cache").rglob("pipeline.skops"))  # scoring files only
    env = service_env(home, e2e_registry["spec_dir"], e2e_registry["url"], auth_enabled="false")
    with gunicorn_service(env, workers=1) as service:
        deadline = time.monotonic() + 60  # the registry confirms the cached version off the start-up path
        while requests.get(f"{service.url}/ready", timeout=30).json()["status"] != "ready":
            assert time.monotonic() < deadline, "the registry never confirmed the cached champion"
            time.sleep(0.2)
        model = requests.get(f"{service.url}/model", timeout=30).json()
        answer = post(f"{service.url}/predict?explain=true", PATIENT)
        log = service.log.read_text()
    assert "from the cache" in log  # it did start from the cache, not from a registry load
    assert answer.status_code == 200, answer.text
    reasons = answer.json()["explanation"]["reasons"]
    assert {reason["feature"] for reason in reasons} >= {"age", "avg_glucose_level"}
    assert model["loaded_from"] == "registry"


LIMIT = 2_000_000  # the default max_body_bytes


def _body_of(size: int) -> bytes:
    """A valid JSON array of one patient, padded with whitespace to exactly `size` bytes."""
    core = json.dumps([PATIENT]).encode()
    return core[:-1] + b" " * (size - len(core)) + b"]"


def _chunks(body: bytes, chunk: int):
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


@pytest.mark.parametrize(
    ("size", "chunk", "status"),
    [
        (LIMIT - 1, 65_536, 200),
        (LIMIT, 1_000, 200),
        (LIMIT + 1, 65_536, 413),
        (LIMIT + 1, 7_777, 413),
        (2 * LIMIT, 1 << 20, 413),
        (5 * LIMIT, 65_536, 413),
    ],
    ids=["just-under", "exactly", "one-over-64k-chunks", "one-over-odd-chunks", "double", "five-times"],
)
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_the_size_limit_holds_however_the_body_arrives(live_service, size, chunk, status, framing):
    """Chunked or with a Content-Length, a body over max_body_bytes is 413 and one within it is scored."""
    body = _body_of(size)
    data = _chunks(body, chunk) if framing == "chunked" else body  # a generator makes requests chunk it
    headers = {**bearer(live_service), "Content-Type": "application/json"}
    response = requests.post(f"{live_service.url}/predict", data=data, headers=headers, timeout=120)
    assert response.status_code == status, response.text[:300]
    if status == 413:
        assert response.json()["error"] == "payload_too_large"
    else:
        assert response.json()[0]["model"]["name"] == "stroke"


def test_a_killed_worker_loses_no_answered_prediction(e2e_registry, tmp_path):
    """kill -9 of a gunicorn worker under load: every prediction answered 200 reaches the log."""
    import psutil

    home = tmp_path / "home"
    env = service_env(home, e2e_registry["spec_dir"], e2e_registry["url"], auth_enabled="false")
    with gunicorn_service(env, workers=2) as service:
        answered: list[str] = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                response = requests.post(f"{service.url}/predict", json=PATIENT, timeout=60)
                if response.status_code == 200:
                    answered.append(response.json()["prediction_id"])

        def wait_for_answers(count: int):
            while len(answered) < count:
                time.sleep(0.05)

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for client in clients:
            client.start()
        wait_for_answers(300)
        victim = psutil.Process(service.process.pid).children()[0]
        victim.kill()  # SIGKILL: no worker_exit hook, no queue flush
        killed_at = len(answered)
        wait_for_answers(killed_at + 300)  # the replacement worker starts and replays the journal
        stop.set()
        for client in clients:
            client.join(60)
        assert victim.pid not in [p.pid for p in psutil.Process(service.process.pid).children()]
        engine = predlog.connect(f"sqlite:///{home / 'predictions.db'}")
        missing = _wait_until_logged(engine, set(answered), seconds=60)
        assert not missing, f"{len(missing)} of {len(answered)} answered predictions were lost"
        for prediction_id in answered[killed_at - 20 : killed_at]:
            response = requests.post(
                f"{service.url}/feedback", json={"prediction_id": prediction_id, "outcome": 1}, timeout=60
            )
            assert response.status_code == 201, (prediction_id, response.text)


def test_ctrl_c_lets_the_requests_in_flight_finish(e2e_registry, tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) under load: every answer begun is whole."""
    env = service_env(tmp_path / "home", e2e_registry["spec_dir"], e2e_registry["url"], auth_enabled="false")
    batch = [PATIENT] * 1000  # long enough that requests are in flight when the signal comes
    outcomes: list[str] = []
    stop = threading.Event()

    def post_batches() -> None:
        while not stop.is_set():
            try:
                response = requests.post(f"{service.url}/predict", json=batch, timeout=60)
                outcomes.append(str(response.status_code) if len(response.json()) == 1000 else "cut")
            except (requests.exceptions.ChunkedEncodingError, ValueError):
                outcomes.append("cut")  # an answer begun, then cut off: what this test looks for
            except requests.ConnectionError:
                # Refused after the stop, or reset while still queued (never begun): both are
                # safe for the client to send again.
                outcomes.append("not answered")
                stop.wait(0.05)

    with gunicorn_service(env) as service:
        clients = [threading.Thread(target=post_batches) for _ in range(4)]
        for client in clients:
            client.start()
        while outcomes.count("200") < 20:
            time.sleep(0.05)
        os.killpg(service.process.pid, signal.SIGINT)
        exit_code = service.process.wait(60)
        stop.set()
        for client in clients:
            client.join(60)
        log = service.log.read_text()
    assert set(outcomes) <= {"200", "not answered"}, Counter(outcomes)
    assert exit_code == 0
    assert "Traceback" not in log and "Handling signal: int" in log


def _wait_until_logged(engine, ids: set[str], seconds: float) -> set[str]:
    """The ids still not in the log after waiting up to `seconds` (workers write every 0.25 s)."""
    deadline = time.monotonic() + seconds
    while True:
        with engine.connect() as conn:
            logged = {row[0] for row in conn.execute(select(predlog.predictions.c.prediction_id))}
        if ids <= logged or time.monotonic() > deadline:
            return ids - logged
        time.sleep(0.5)
