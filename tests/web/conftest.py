"""Fixtures of the web tier: fitted models without MLflow, apps on a fake registry, and (for the
tests marked slow) a real `mlflow server` of our own holding a champion trained by `clinrisk train`."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits
from web_fakes import FakeRegistry, fit_model, make_app, web_settings
from web_support import PASSWORD, alices_service, postgres_server, run_clinrisk, service_env

from clinrisk.model import RiskModel
from clinrisk.web.users import add_api_key, add_user
from support import mlflow_server, write_fast_spec


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Score and fit with one OpenMP thread: two test workers on two cores otherwise thrash."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def logistic_model(stroke_spec, raw_stroke) -> RiskModel:
    with threadpool_limits(limits=1):
        return fit_model(stroke_spec, raw_stroke, "logistic_regression")


@pytest.fixture(scope="session")
def boosting_model(stroke_spec, raw_stroke) -> RiskModel:
    with threadpool_limits(limits=1):
        return fit_model(stroke_spec, raw_stroke, "hist_gradient_boosting")


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory, logistic_model):
    """One app with auth on and a user 'alice' (password and API key), for read-only tests."""
    settings = web_settings(tmp_path_factory.mktemp("web-home"))
    add_user(settings.users_file, "alice", PASSWORD)
    key = add_api_key(settings.users_file, "alice")
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    app.config["API_KEY"] = key
    yield app
    app.extensions["clinrisk"].close()


@pytest.fixture
def client(shared_app):
    """A test client that sends alice's API key."""
    client = shared_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {shared_app.config['API_KEY']}"
    return client


@pytest.fixture
def open_app(tmp_path, logistic_model):
    """A fresh app with auth off and a fake registry the test can change."""
    source = FakeRegistry({"1": logistic_model}, "1")
    app = make_app(web_settings(tmp_path / "home", auth_enabled=False, fast_path=False), source, watch=False)
    app.config["SOURCE"] = source
    yield app
    app.extensions["clinrisk"].close()


@pytest.fixture(scope="session")
def e2e_registry(tmp_path_factory) -> dict:
    """Our own `mlflow server` with a stroke champion from `clinrisk train` (fast spec).

    Training runs as a subprocess so that MLflow's process-wide URIs in the test process stay
    untouched; the tests that use it share one xdist group and change the champion alias.
    """
    root = tmp_path_factory.mktemp("web-e2e")
    with mlflow_server(root / "mlflow") as url:
        spec_dir = write_fast_spec(root / "specs")
        summary = run_clinrisk(service_env(root / "trainer", spec_dir, url), "train")
        yield {"url": url, "spec_dir": spec_dir, "root": root, "trained": summary}


@pytest.fixture(scope="session")
def live_service(e2e_registry, tmp_path_factory):
    """`clinrisk serve` (gunicorn, 2 workers, auth on, user alice) on the e2e registry's champion."""
    # The fuzzer sends many wrong passwords on purpose: the failed-login limit (tested in
    # test_web_login_limits.py) would answer 429 where the schema checks expect 401.
    home, spec_dir, url = tmp_path_factory.mktemp("live-home"), e2e_registry["spec_dir"], e2e_registry["url"]
    with alices_service(home, spec_dir, url, auth_failure_limit="1000000") as service:
        yield service


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL server, the prediction log's production database."""
    with postgres_server() as url:
        yield url
