"""Fixtures shared by every tier: settings on a temporary state directory, the real data,
a fast spec for tests that train repeatedly, a trained registry and a real MLflow server."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from _pytest.nodeid import NodeId

from clinrisk.settings import Settings, load_settings
from clinrisk.spec import ModelSpec, load_spec
from support import RAW_STROKE, REPO, mlflow_server, write_fast_spec

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Fail fast instead of MLflow's default minutes of retries when a server is down on purpose.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


TIERS = ("code", "data", "model", "integration", "e2e", "browser")
# The tier of each test module that does not mark its tests itself (`make test-tier TIER=...`).
TIER_OF_MODULE = {
    "core/test_cli.py": "code",
    "core/test_spec.py": "code",
    "core/test_data.py": "data",
    "core/test_gate.py": "model",
    "core/test_model.py": "model",
    "core/test_second_model.py": "model",
    "core/test_threshold.py": "model",
    "core/test_registry.py": "integration",
    "monitoring/test_decision.py": "code",
    "monitoring/test_report_pages.py": "code",
    "monitoring/test_monitor_data.py": "data",
    "monitoring/test_monitor_cli.py": "integration",
    "monitoring/test_reports.py": "integration",
    "stack/test_stack_parts.py": "code",
    "stack/test_local_stack.py": "e2e",
    "stack/test_supervisor.py": "integration",
    "stack/test_readme.py": "code",
    "web/test_web_e2e.py": "e2e",
    "web/test_web_fuzz.py": "integration",
    "web/test_web_browser.py": "browser",
    "store/test_loop.py": "e2e",
}
TIER_OF_DIRECTORY = {"flows": "integration", "compose": "e2e", "web": "code"}


def tier_of(item: pytest.Item) -> str:
    """The tier a test belongs to: its own marker, else its module's or its directory's, else by speed."""
    own = [m.name for m in item.iter_markers() if m.name in TIERS]
    if own:
        return own[0]
    relative = Path(str(item.path)).relative_to(REPO / "tests").as_posix()
    tier = TIER_OF_MODULE.get(relative) or TIER_OF_DIRECTORY.get(relative.split("/")[0])
    return tier or ("integration" if item.get_closest_marker("slow") else "code")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Give every test exactly one tier marker, before `-m` selects on markers."""
    tier = tier_of(item)
    if not item.get_closest_marker(tier):
        item.add_marker(tier)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep xdist groups together under `--dist loadgroup` with pytest 9.

    pytest-xdist 3.8 appends '@group' to `item._nodeid`, which pytest 9 no longer reads, so
    grouped tests would spread over workers and each worker would start its own servers.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker is None or "@" in item.nodeid:
            continue
        group = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
        item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """No test touches ./.clinrisk or the developer's own tracking server."""
    home = tmp_path_factory.mktemp("clinrisk-home")
    monkeypatch.setenv("CLINRISK_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(REPO / "models"))


@pytest.fixture(scope="session")
def stroke_spec() -> ModelSpec:
    return load_spec(REPO / "models" / "stroke.yaml")


@pytest.fixture(scope="session")
def raw_stroke() -> pd.DataFrame:
    """The real stroke file exactly as published (N/A bmi as NaN)."""
    return pd.read_csv(RAW_STROKE, na_values=["N/A"])


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings on a fresh state directory with the real stroke spec."""
    return load_settings(home=tmp_path / "home", spec_dir=REPO / "models")


@pytest.fixture
def fast_settings(tmp_path) -> Settings:
    """Settings whose stroke spec trains in a few seconds (logistic regression only)."""
    return load_settings(home=tmp_path / "home", spec_dir=write_fast_spec(tmp_path / "specs"))


@pytest.fixture(scope="session")
def trained_settings(tmp_path_factory) -> Settings:
    """A state directory holding one promoted stroke champion trained on the real data.

    Shared by the tests of one worker: tests must read from it, never change its aliases.
    """
    from clinrisk.retraining import retrain

    root = tmp_path_factory.mktemp("trained")
    settings = load_settings(home=root / "home", spec_dir=write_fast_spec(root / "specs"))
    summary = retrain(settings, "stroke")
    assert summary["promoted"], summary
    return settings


@pytest.fixture(scope="session")
def mlflow_server_url(tmp_path_factory) -> str:
    """The URL of a real `mlflow server` process (SQLite backend), one per test worker."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url
