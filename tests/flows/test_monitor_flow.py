"""The monitor flow on a real Prefect API and a real MLflow store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinrisk import predlog, registry
from clinrisk.flows import tasks
from clinrisk.flows.monitor import monitor
from clinrisk.monitoring.index import read_summaries
from flows.prefect_api import deployment_runs, markdown_artifacts, task_runs
from support import free_port

pytestmark = pytest.mark.xdist_group("prefect-harness")


def log_predictions(settings, frame, spec, created_at) -> None:
    """Write rows to the prediction log as the web service does."""
    records = frame[spec.feature_names].astype(object).where(frame[spec.feature_names].notna(), None)
    rows = [
        {
            "prediction_id": str(uuid.uuid4()),
            "created_at": created_at,
            "model_name": "stroke",
            "model_version": "1",
            "features": record,
            "probability": 0.1,
            "prediction": 0,
        }
        for record in records.to_dict("records")
    ]
    predlog.write_predictions(predlog.connect(settings.prediction_log_url), rows)


def test_an_unchanged_week_of_predictions_is_not_drift(
    flow_env, undrifted_sample, drifted_sample, retrain_deployment
):
    """It reads last week's logged predictions, finds no drift and starts no retrain."""
    spec = registry.load_alias(flow_env, "stroke").spec
    now = datetime.now(UTC)
    log_predictions(flow_env, undrifted_sample, spec, now - timedelta(hours=3))
    log_predictions(flow_env, drifted_sample.head(300), spec, now - timedelta(days=10))  # outside the window
    state = monitor(retrain_deployment=retrain_deployment, return_state=True)
    summary = state.result()
    assert summary["rows"] == len(undrifted_sample) and summary["window"]["source"] == "prediction log"
    assert summary["drift_detected"] is False and summary["retrain"]["recommended"] is False
    assert deployment_runs(retrain_deployment) == []
    artifact = markdown_artifacts(state.state_details.flow_run_id)["stroke-monitor"]
    assert "no drift" in artifact and "No retrain needed." in artifact


def test_drift_starts_exactly_one_retrain_within_the_cooldown(
    flow_env, drifted_sample, retrain_deployment, tmp_path
):
    """It starts the retrain deployment on drift, and a second drifted run within the cooldown starts none."""
    path = tmp_path / "drifted.csv"
    drifted_sample.to_csv(path, index=False)
    first = monitor(current_path=str(path), retrain_deployment=retrain_deployment)
    second = monitor(current_path=str(path), retrain_deployment=retrain_deployment)
    runs = deployment_runs(retrain_deployment)
    assert len(runs) == 1
    assert first["drift_detected"] and first["retrain"]["triggered"]
    assert first["retrain"]["flow_run"]["id"] == str(runs[0].id)
    assert {"auto-retrain", "model:stroke"} <= set(runs[0].tags)
    assert runs[0].parameters["reason"].startswith("monitor: data drift")
    assert not second["retrain"]["triggered"] and second["retrain"]["blocked_by"].startswith("cooldown")
    assert "cooldown" in Path(second["report"]).read_text(encoding="utf-8")


def test_without_a_retrain_deployment_it_starts_its_own_models_retrain(
    flow_env, drifted_sample, tmp_path, monkeypatch
):
    """Monitoring stroke while another model is the default, drift starts `retrain/stroke` for stroke."""
    from clinrisk.flows.retrain import retrain

    retrain.to_deployment(name="stroke").apply()
    monkeypatch.setenv("CLINRISK_MODEL_NAME", "diabetes")
    path = tmp_path / "drifted.csv"
    drifted_sample.to_csv(path, index=False)
    summary = monitor(model_name="stroke", current_path=str(path))
    (run,) = deployment_runs("retrain/stroke")
    assert summary["retrain"]["flow_run"] == {
        "id": str(run.id),
        "name": run.name,
        "deployment": "retrain/stroke",
    }
    assert run.parameters["model_name"] == "stroke" and "model:stroke" in run.tags


def test_a_batch_with_a_wrong_schema_fails_naming_the_column(
    flow_env, drifted_sample, retrain_deployment, tmp_path
):
    """It fails naming the missing column, starts no retrain and leaves the champion as it was."""
    champion = registry.alias_version(flow_env, "stroke", "champion")
    path = tmp_path / "bad.csv"
    drifted_sample.drop(columns=["smoking_status"]).to_csv(path, index=False)
    state = monitor(current_path=str(path), retrain_deployment=retrain_deployment, return_state=True)
    assert state.is_failed() and "missing column: smoking_status" in state.message
    assert deployment_runs(retrain_deployment) == []
    assert registry.alias_version(flow_env, "stroke", "champion") == champion
    assert not (tmp_path / "reports").exists()


def test_an_unreachable_mlflow_is_retried_then_fails_clearly(flow_env, tmp_path, monkeypatch):
    """It retries the MLflow task, then fails the flow naming the failed call and the refused connection."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(tasks.load_champion, "retry_delay_seconds", [0])
    state = monitor(current_path=str(tmp_path / "never-read.csv"), return_state=True)
    assert state.is_failed() and "reading alias 'champion' of 'stroke' failed" in state.message
    assert "Connection refused" in state.message
    attempts = [t for t in task_runs(state.state_details.flow_run_id) if t.name.startswith("load-champion")]
    assert attempts[0].run_count == tasks.load_champion.retries + 1


@pytest.mark.parametrize("bad_name", ["retrain", "retrain/not-deployed"])
def test_a_bad_retrain_deployment_keeps_the_report_and_fails_at_once_naming_it(
    flow_env, drifted_sample, tmp_path, bad_name
):
    """It saves and records the report, then fails naming the parameter, with one trigger attempt."""
    path = tmp_path / "drifted.csv"
    drifted_sample.to_csv(path, index=False)
    state = monitor(current_path=str(path), retrain_deployment=bad_name, return_state=True)
    assert state.is_failed() and f"retrain_deployment '{bad_name}'" in state.message
    (report,) = read_summaries(flow_env.reports_dir)
    assert report["retrain"]["blocked_by"].startswith(f"retrain not started: retrain_deployment '{bad_name}'")
    assert "retrain not started" in (flow_env.reports_dir / report["path"] / "report.html").read_text()
    version = registry.alias_version(flow_env, "stroke", "champion")
    tags = registry.version_tags(flow_env, "stroke", version)
    assert tags["monitor.last_report"] == Path(report["path"]).name
    attempts = [t for t in task_runs(state.state_details.flow_run_id) if t.name.startswith("trigger-retrain")]
    assert [t.run_count for t in attempts] == [1]


def test_a_prefect_outage_at_trigger_time_keeps_the_report_and_says_why(
    flow_env, drifted_sample, tmp_path, retrain_deployment, monkeypatch
):
    """It retries the trigger, then completes with the report saying the retrain was not started and why."""
    import httpx

    from clinrisk.flows import triggering

    def prefect_down(*_args, **_kwargs):
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(triggering, "last_auto_retrain", prefect_down)
    monkeypatch.setattr(tasks.trigger_retrain, "retry_delay_seconds", [0])
    path = tmp_path / "drifted.csv"
    drifted_sample.to_csv(path, index=False)
    state = monitor(current_path=str(path), retrain_deployment=retrain_deployment, return_state=True)
    assert state.is_completed()
    summary = state.result()
    why = "retrain not started: All connection attempts failed"
    assert summary["retrain"]["blocked_by"] == why and not summary["retrain"]["triggered"]
    assert why in Path(summary["report"]).read_text(encoding="utf-8")
    assert why in (flow_env.reports_dir / "index.html").read_text(encoding="utf-8")
    assert deployment_runs(retrain_deployment) == []
    attempts = [t for t in task_runs(state.state_details.flow_run_id) if t.name.startswith("trigger-retrain")]
    assert attempts[0].run_count == tasks.trigger_retrain.retries + 1


def test_a_skipped_run_is_listed_in_the_index(flow_env, undrifted_sample, tmp_path):
    """It lists a window too small to judge in the index, with the reason, and logs the outcome."""
    path = tmp_path / "few.csv"
    undrifted_sample.head(5).to_csv(path, index=False)
    state = monitor(current_path=str(path), return_state=True)
    assert state.result()["skipped"].startswith("only 5 rows")
    (listed,) = read_summaries(flow_env.reports_dir)
    assert listed["kind"] == "skipped" and listed["rows"] == 5
    index_html = (flow_env.reports_dir / "index.html").read_text(encoding="utf-8")
    assert "monitor (skipped)" in index_html and "only 5 rows" in index_html
    artifact = markdown_artifacts(state.state_details.flow_run_id)["stroke-monitor"]
    assert artifact.startswith("# Monitoring stroke: skipped, only 5 rows")
