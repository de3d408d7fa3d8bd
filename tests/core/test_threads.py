"""Thread counts for the numeric libraries come from settings, defaulting to the usable cores."""

from __future__ import annotations

import os

import pytest
from threadpoolctl import threadpool_info

from clinrisk.settings import load_settings
from clinrisk.threads import available_cores, limited, thread_count


def test_the_default_is_the_cores_this_process_may_use():
    """It counts the CPU affinity, not the machine's cores."""
    assert available_cores() == len(os.sched_getaffinity(0))
    assert thread_count(None) == available_cores()


@pytest.mark.parametrize("configured", [1, 3])
def test_a_configured_count_limits_every_loaded_pool_inside_the_block(configured):
    """It sets OpenMP and BLAS pools to the configured count inside the block and restores them after."""
    import sklearn.ensemble  # noqa: F401  loads OpenMP, as training does

    before = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    with limited(configured) as count:
        assert count == configured
        assert {pool["num_threads"] for pool in threadpool_info()} == {configured}
    assert {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()} == before


def test_the_setting_is_read_from_the_environment(monkeypatch):
    """It reads CLINRISK_THREADS and refuses zero."""
    from clinrisk.errors import ClinriskError

    monkeypatch.setenv("CLINRISK_THREADS", "1")
    assert load_settings().threads == 1
    monkeypatch.setenv("CLINRISK_THREADS", "0")
    with pytest.raises(ClinriskError, match="CLINRISK_THREADS"):
        load_settings()
