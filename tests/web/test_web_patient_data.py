"""Patient data stays out of logs, error bodies and caches: headers, and a failing prediction log."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from web_fakes import FakeRegistry, make_app, web_settings
from web_support import PATIENT, reload_gunicorn_conf


@pytest.fixture
def broken_log_app(tmp_path, logistic_model):
    """Auth off, and a prediction log whose tables lack the columns every write needs."""
    path = tmp_path / "predictions.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE predictions (prediction_id TEXT PRIMARY KEY)")
        db.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, prediction_id TEXT)")
        db.execute("INSERT INTO predictions VALUES ('0f6e1a0c-0000-4000-8000-000000000001')")
    settings = web_settings(tmp_path / "home", auth_enabled=False, prediction_log_url=f"sqlite:///{path}")
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    yield app
    app.extensions["clinrisk"].close()


def test_a_failing_database_logs_no_features_and_no_sql(broken_log_app, caplog):
    """It logs why the log write failed without the patient's values or the statement."""
    patient = {**PATIENT, "avg_glucose_level": 187.43, "bmi": 31.7}
    client = broken_log_app.test_client()
    with caplog.at_level(logging.INFO):
        assert client.post("/predict", json=patient).status_code == 200
        broken_log_app.extensions["clinrisk"].writer.flush(timeout=5)
        feedback = client.post(
            "/feedback", json={"prediction_id": "0f6e1a0c-0000-4000-8000-000000000001", "outcome": 1}
        )
    assert feedback.status_code == 503
    assert "INSERT" not in feedback.get_data(as_text=True) and "SQL" not in feedback.get_data(as_text=True)
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "failed" in text  # the failure itself is logged
    for leak in ("187.43", "31.7", "INSERT", "[SQL", "parameters"):
        assert leak not in text


@pytest.mark.parametrize("path", ["/predict", "/model", "/ready", "/health"])
def test_responses_are_not_cached_or_sniffed(open_app, path):
    """It marks every answer no-store and nosniff."""
    client = open_app.test_client()
    response = client.post(path, json=PATIENT) if path == "/predict" else client.get(path)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_carry_a_content_security_policy(open_app):
    """It sends a CSP that forbids framing and foreign scripts on HTML pages."""
    policy = open_app.test_client().get("/docs").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_unauthenticated_endpoints_show_no_paths_or_urls(tmp_path):
    """It says why nothing is served on /ready without naming files or servers."""
    source = FakeRegistry({}, None)
    source.down = True
    home = tmp_path / "home"
    app = make_app(web_settings(home, tracking_uri="http://10.9.9.9:5000"), source, watch=False)
    client = app.test_client()
    for path in ("/ready", "/health", "/metrics"):
        body = client.get(path).get_data(as_text=True)
        assert str(home) not in body and "10.9.9.9" not in body and "sqlite" not in body
    app.extensions["clinrisk"].close()


def test_the_prediction_log_records_who_asked(tmp_path, logistic_model):
    """It stores the authenticated user with each prediction and each outcome."""
    from sqlalchemy import create_engine, text

    from clinrisk.web.users import add_api_key, add_user

    settings = web_settings(tmp_path / "home")
    add_user(settings.users_file, "alice", "a long enough password")
    key = add_api_key(settings.users_file, "alice")
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    prediction = client.post("/predict", json=PATIENT).json["prediction_id"]
    assert client.post("/feedback", json={"prediction_id": prediction, "outcome": 1}).status_code == 201
    app.extensions["clinrisk"].close()
    engine = create_engine(settings.prediction_log_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT requested_by FROM predictions")).scalar_one() == "alice"
        assert conn.execute(text("SELECT requested_by FROM feedback")).scalar_one() == "alice"


def test_the_metrics_directory_is_never_clinrisk_home(tmp_path, monkeypatch):
    """It refuses CLINRISK_HOME as the metrics directory and clears only prometheus files."""
    conf = reload_gunicorn_conf(monkeypatch, tmp_path / "home")
    with pytest.raises(SystemExit, match="PROMETHEUS_MULTIPROC_DIR"):
        conf._own_metrics_dir(str(tmp_path / "home"))
    directory = conf._own_metrics_dir(str(tmp_path / "metrics"))
    assert oct((tmp_path / "metrics").stat().st_mode & 0o777) == "0o700"
    assert conf.METRICS_FILE.fullmatch("counter_123.db") and not conf.METRICS_FILE.fullmatch("mlflow.db")
    assert directory == str(tmp_path / "metrics")
