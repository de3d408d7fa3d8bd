"""The `monitor` flow: drift and quality of the recent window, and a retrain when they call for one.

The report and its registry records are written before the retrain is started, so a failing
trigger (a bad `retrain_deployment`, Prefect down) never loses them; the trigger's outcome is
then added to the report's decision.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from clinrisk.flows import summaries, tasks, triggering
from clinrisk.flows.deployments import full_name
from clinrisk.monitoring.monitor import log_window, too_few_rows
from clinrisk.settings import load_settings


@flow(name="monitor", log_prints=True)
def monitor(
    model_name: str | None = None,
    window_hours: float = 168,
    current_path: str | None = None,
    min_rows: int = 30,
    retrain_deployment: str | None = None,
    trigger_retrain: bool = True,
) -> dict:
    """Compare the last `window_hours` of logged predictions (or `current_path`) with the champion's
    training sample; on drift or a quality breach, start `retrain_deployment` (the same model's,
    `retrain/<model>`, when None) unless it is cooling down.
    """
    settings = load_settings()
    name, now = model_name or settings.model_name, datetime.now(UTC)
    retrain_deployment = retrain_deployment or full_name("retrain", name)
    champion = tasks.load_champion(settings, name)
    spec, version = champion.spec, champion.info["version"]
    frame, window = tasks.read_current(settings, name, spec, log_window(now, window_hours), current_path)
    if reason := too_few_rows(frame, min_rows):
        skipped = {"model": name, "model_version": version, "window": window.to_dict(), "rows": len(frame)}
        tasks.record_skipped(settings.reports_dir, {**skipped, "reason": reason}, now)
        tasks.publish_artifact("monitor", name, summaries.skipped_markdown(name, window.to_dict(), reason))
        return {"skipped": reason, "model_version": version, "window": window.to_dict()}
    current = tasks.prepare_rows(frame, spec, champion)
    raw_reference, label = tasks.load_reference(settings, champion, spec, None)
    reference = tasks.prepare_rows(raw_reference, spec, champion)
    snapshot, summary = tasks.evaluate(settings, spec, current, reference, version, window, label, now)
    wants_retrain = summary["retrain"]["recommended"] and trigger_retrain
    if wants_retrain:
        summary["retrain"]["blocked_by"] = f"starting {retrain_deployment} after this report was saved"
    report = tasks.publish_report(settings.reports_dir, settings.evidently_workspace, snapshot, summary, now)
    tasks.record_in_registry(settings, name, version, report, summary)
    outcome = None
    if wants_retrain:
        causes, cooldown = summary["retrain"]["causes"], settings.retrain_cooldown_hours
        state = tasks.trigger_retrain(retrain_deployment, name, causes, cooldown, now, return_state=True)
        outcome = triggering.outcome_of(state)
        summary = tasks.record_decision(report, summary, outcome)
    tasks.publish_artifact("monitor", name, summaries.monitor_markdown(summary))
    triggering.raise_bad_parameter(outcome)
    return summary
