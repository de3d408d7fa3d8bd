"""The retrain flow runs a regression spec unchanged: R² gate, Evidently comparison, markdown artifact."""

from __future__ import annotations

import pytest

from clinrisk import registry
from clinrisk.flows.retrain import retrain
from clinrisk.settings import load_settings
from flows.prefect_api import markdown_artifacts


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-harness")
def test_retrain_flow_trains_and_gates_a_regression(prefect_harness):
    """diabetes_progression: promoted on R² ≥ 0.4, compared on its holdout, summarised with no threshold."""
    state = retrain(model_name="diabetes_progression", return_state=True)
    summary = state.result()
    assert summary["promoted"] and summary["threshold"] is None and summary["metrics"]["r2"] >= 0.4
    assert registry.alias_version(load_settings(), "diabetes_progression", "champion") == summary["version"]
    artifact = markdown_artifacts(state.state_details.flow_run_id)["diabetes-progression-retrain"]
    assert "no threshold (regression)" in artifact and "| r2 |" in artifact
