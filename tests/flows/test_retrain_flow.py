"""The retrain flow end to end on the real data, with the full spec, real MLflow and a real Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinrisk import registry
from clinrisk.flows.retrain import retrain
from clinrisk.monitoring.index import read_summaries
from clinrisk.settings import load_settings
from flows.prefect_api import markdown_artifacts


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-harness")
def test_retrain_trains_registers_gates_compares_and_summarises(prefect_harness):
    """It trains every candidate on the real file, promotes the first version and summarises why."""
    state = retrain(return_state=True)
    summary = state.result()
    settings = load_settings()
    assert summary["promoted"] and summary["version"] == "1" and summary["reason"] == "scheduled"
    assert registry.alias_version(settings, "stroke", "champion") == "1"
    assert summary["metrics"]["precision"] >= 0.15
    (report,) = read_summaries(settings.reports_dir)
    assert report["kind"] == "retrain" and report["champion_version"] is None
    assert [s["name"] for s in report["slices"]] == ["sex", "age band"]
    assert "brier" in report["challenger_metrics"]
    assert 'data-slice="age band"' in Path(summary["report"]).read_text(encoding="utf-8")
    facts, tags, _ = registry.load_card(settings, "stroke", "1")
    assert tags["gate.decision"] == "promoted" and facts["slices"]
    assert Path(summary["report"]).is_file() and "challenger" in Path(summary["report"]).read_text(
        encoding="utf-8"
    )
    artifact = markdown_artifacts(state.state_details.flow_run_id)["stroke-retrain"]
    assert (
        "promoted to champion" in artifact
        and "there is no champion yet" in artifact
        and "| recall |" in artifact
    )
