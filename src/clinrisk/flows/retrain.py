"""The `retrain` flow: validate, train, log, register, gate, compare on the holdout, summarise."""

from __future__ import annotations

from prefect import flow

from clinrisk.flows import summaries, tasks
from clinrisk.retraining import data_path_for, summary
from clinrisk.settings import load_settings


@flow(name="retrain", log_prints=True)
def retrain(
    model_name: str | None = None,
    data_path: str | None = None,
    seed: int | None = None,
    reason: str = "scheduled",
) -> dict:
    """Retrain a model on its spec's data (or `data_path`) and promote it only if the gate agrees.

    Connection settings come from the environment (CLINRISK_*, MLFLOW_TRACKING_URI), so the same
    deployment runs in the local stack and under compose.
    """
    settings = load_settings()
    name = model_name or settings.model_name
    spec, frame, sha = tasks.load_training_data(settings, name, data_path)
    result = tasks.train_candidates(spec, frame, seed, sha)
    source = data_path_for(spec, data_path)
    version = tasks.log_and_register(settings, result, source)
    previous = tasks.champion_version(settings, name, "champion")
    decision = tasks.apply_gate(settings, version.version, result.model, result.holdout)
    tasks.refresh_card(settings, version.name, version.version)
    report = tasks.compare_on_holdout(
        settings, result.model, version.version, result.holdout, decision, previous, reason, str(source)
    )
    outcome = summary(result, version, decision)
    tasks.publish_artifact("retrain", name, summaries.retrain_markdown(outcome, reason, str(report)))
    return {**outcome, "report": str(report), "reason": reason}
