"""Fixtures of the monitoring tests: a champion of their own and samples of the real data."""

from __future__ import annotations

import pandas as pd
import pytest

from clinrisk.settings import Settings
from monitoring.samples import drifted, store_env, trained_store, undrifted


@pytest.fixture(scope="session")
def monitor_store(tmp_path_factory) -> Settings:
    """A store with a fast-trained champion, shared by this worker's monitoring tests."""
    return trained_store(tmp_path_factory.mktemp("monitor-store"))


@pytest.fixture
def monitor_env(monitor_store, tmp_path, monkeypatch) -> Settings:
    """Settings from the environment on `monitor_store`, with reports in this test's tmp_path."""
    return store_env(monkeypatch, monitor_store, tmp_path)


@pytest.fixture(scope="session")
def undrifted_sample(raw_stroke) -> pd.DataFrame:
    return undrifted(raw_stroke)


@pytest.fixture(scope="session")
def drifted_sample(raw_stroke) -> pd.DataFrame:
    return drifted(raw_stroke)
