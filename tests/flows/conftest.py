"""Fixtures of the flow tests: one Prefect test harness per worker, and a champion of their own."""

from __future__ import annotations

import uuid

import pytest

from clinrisk.settings import Settings
from monitoring.samples import store_env, trained_store


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect API (temporary SQLite database) for every flow run of this worker."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def flow_store(tmp_path_factory) -> Settings:
    """A store with a fast-trained champion, shared by the monitor and batch flow tests."""
    return trained_store(tmp_path_factory.mktemp("flow-store"))


@pytest.fixture
def flow_env(prefect_harness, flow_store, tmp_path, monkeypatch) -> Settings:
    """Flows read their settings from the environment: point it at `flow_store` and tmp_path."""
    return store_env(monkeypatch, flow_store, tmp_path)


@pytest.fixture
def retrain_deployment(prefect_harness) -> str:
    """A retrain deployment of its own (no worker: its runs are created, never executed)."""
    from clinrisk.flows.retrain import retrain

    name = f"retrain-{uuid.uuid4().hex[:8]}"
    retrain.to_deployment(name=name).apply()
    return f"retrain/{name}"


@pytest.fixture(scope="session")
def undrifted_sample(raw_stroke):
    from monitoring.samples import undrifted

    return undrifted(raw_stroke)


@pytest.fixture(scope="session")
def drifted_sample(raw_stroke):
    from monitoring.samples import drifted

    return drifted(raw_stroke)
