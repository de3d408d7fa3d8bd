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
    assert summary["promoted"] and summary["version"] == "1"
    assert summary["reason"] == "direct call of the flow"
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
    assert artifact.startswith("# Retrain of stroke: version 1 promoted to champion (started by: direct call")
    assert (
        "promoted to champion" in artifact
        and "there is no champion yet" in artifact
        and "| recall |" in artifact
    )

    again = retrain(return_state=True)
    assert again.result()["skipped"] == "no new labelled data since version 1"
    assert registry.latest_version(settings, "stroke") == "1"
    skipped = markdown_artifacts(again.state_details.flow_run_id)["stroke-retrain"]
    assert "skipped" in skipped and "no new labelled data since version 1" in skipped


@pytest.mark.xdist_group("prefect-harness")
def test_ingest_flow_files_inbox_batches(prefect_harness, settings, monkeypatch, raw_stroke):
    """The ingest flow adds a good inbox file, rejects a bad one with a reason, and reports both."""
    from clinrisk import inbox
    from clinrisk.flows.ingest import ingest

    monkeypatch.setenv("CLINRISK_HOME", str(settings.home))
    folder = inbox.inbox_dir(settings, "stroke")
    folder.mkdir(parents=True)
    batch = raw_stroke.head(20).assign(id=lambda f: f["id"] + 1_000_000)
    batch.to_csv(folder / "lab.csv", index=False)
    batch.drop(columns=["stroke"]).to_csv(folder / "unlabelled.csv", index=False)
    state = ingest(return_state=True)
    results = {r["file"]: r for r in state.result()}
    assert results["lab.csv"]["status"] == "done" and results["lab.csv"]["added"] == 20
    assert results["unlabelled.csv"]["status"] == "rejected"
    assert "missing column: stroke" in (folder / "rejected" / "unlabelled.csv.reason.txt").read_text()
    artifact = markdown_artifacts(state.state_details.flow_run_id)["stroke-ingest"]
    assert "lab.csv" in artifact and "rejected" in artifact
