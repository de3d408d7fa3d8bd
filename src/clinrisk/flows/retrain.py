"""The `retrain` flow: the steps of `clinrisk.retraining`, each one a task, composed in order."""

from __future__ import annotations

from prefect import flow

from clinrisk.flows import origin, summaries, tasks
from clinrisk.retraining import skip_reason, skipped_summary, summary
from clinrisk.settings import load_settings
from clinrisk.threads import limited


@flow(name="retrain", log_prints=True)
def retrain(
    model_name: str | None = None,
    data_path: str | None = None,
    seed: int | None = None,
    reason: str | None = None,
) -> dict:
    """Ingest the inbox, train on the labelled store (or `data_path`), promote only if the gate agrees.

    Nothing is trained when the store holds no row the champion did not see. Connection settings
    come from the environment (CLINRISK_*, MLFLOW_TRACKING_URI), so the same deployment runs in the
    local stack and under compose. `reason` defaults to who started the run (schedule, Prefect UI
    or API, CLI, monitoring).
    """
    reason = origin.started_by(reason)
    settings = load_settings()
    name = model_name or settings.model_name
    tasks.ingest_inbox(settings, name, data_path)
    data = tasks.load_training_data(settings, name, data_path)
    champion = tasks.load_current_champion(settings, name)
    skipped = skip_reason(data, champion)
    if skipped:
        outcome = skipped_summary(data, champion, skipped)
        tasks.publish_artifact("retrain", name, summaries.retrain_skipped_markdown(outcome, reason))
        return {**outcome, "reason": reason}
    champion = tasks.download_champion(settings, name, champion)
    split = tasks.plan_evaluation(data, champion)
    with limited(settings.threads):
        result = tasks.train_candidates(data.spec, split.train, seed, data.sha256, split.evaluation)
        served = tasks.refit_on_all(data, result, seed)
    version = tasks.log_and_register(settings, data, result, served, split.rule)
    decision = tasks.apply_gate(settings, version.version, result.model, result.holdout, champion.model)
    tasks.refresh_card(settings, version.name, version.version)
    report = tasks.compare_on_holdout(settings, result, version, decision, reason, data)
    outcome = summary(result, version, decision, data, split.rule)
    tasks.publish_artifact("retrain", name, summaries.retrain_markdown(outcome, reason, str(report)))
    return {**outcome, "report": str(report), "reason": reason}
