"""Prefect tasks: each wraps one plain function of the package, so flows only compose.

Tasks that touch MLflow, the prediction log, the Prefect API or files retry with growing
delays; bad data, a bad spec or a missing champion fail at once, since retrying cannot fix them.
Results stay in memory (models and frames are not worth persisting) and nothing is cached.
"""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from clinrisk import inbox, predict, registry, retraining, train
from clinrisk.errors import DataValidationError, NoChampionError, NoThresholdError, SpecError
from clinrisk.flows import triggering
from clinrisk.flows.triggering import BadDeploymentError
from clinrisk.monitoring import monitor, store

RETRY_DELAYS_SECONDS = [2, 10, 30]
NOT_RETRIED = (DataValidationError, SpecError, NoChampionError, NoThresholdError, BadDeploymentError)


def retry_outside_failures(_task, _task_run, state) -> bool:
    """Retry when the outside world failed; never for bad input or a missing champion."""
    return not isinstance(state.data, NOT_RETRIED)


compute_task = partial(task, cache_policy=NO_CACHE, persist_result=False)
io_task = partial(
    compute_task,
    retries=len(RETRY_DELAYS_SECONDS),
    retry_delay_seconds=RETRY_DELAYS_SECONDS,
    retry_condition_fn=retry_outside_failures,
)

# Retraining: the steps of `clinrisk.retraining`, in its order.
ingest_inbox = io_task(retraining.ingest, name="ingest-inbox")
load_training_data = io_task(retraining.load_data, name="snapshot-labelled-data")
load_current_champion = io_task(retraining.load_champion, name="read-champion-snapshot")
download_champion = io_task(retraining.download_champion, name="download-champion-once")
plan_evaluation = compute_task(retraining.plan, name="plan-evaluation-rows")
train_candidates = compute_task(train.train_model, name="train-candidates-and-threshold")
refit_on_all = compute_task(retraining.served_model, name="refit-on-all-rows")
log_and_register = io_task(retraining.register, name="log-and-register")
apply_gate = io_task(retraining.apply_gate_for, name="promotion-gate")
refresh_card = io_task(registry.refresh_card, name="write-model-card")
compare_on_holdout = io_task(retraining.write_report, name="evidently-comparison")

# Ingestion of the inbox folder on its own schedule.
ingest_folder = io_task(inbox.ingest, name="ingest-inbox-folder")

# Monitoring.
load_champion = io_task(registry.load_alias, name="load-champion")
read_current = io_task(monitor.read_current, name="read-current-window")
load_reference = io_task(monitor.reference_for, name="load-reference")
prepare_rows = compute_task(monitor.prepare, name="validate-and-score")
evaluate = compute_task(monitor.evaluate, name="evidently-checks")
trigger_retrain = io_task(triggering.trigger_with_cooldown, name="trigger-retrain")
publish_report = io_task(store.publish, name="save-report")
record_in_registry = io_task(store.record_in_registry, name="log-report-to-mlflow")
record_decision = io_task(store.record_decision, name="record-retrain-decision")
record_skipped = io_task(store.record_skipped, name="list-skipped-run")

# Batch scoring: the signed ONNX bundle of the champion, never a pickle.
load_served_champion = io_task(registry.load_served_alias, name="load-served-champion")
score_file = io_task(predict.score_file, name="score-file")


@compute_task(name="publish-artifact")
def publish_artifact(kind: str, model_name: str, markdown: str) -> None:
    """Show a markdown summary on the flow run's Artifacts tab (keyed per model and flow).

    Its title (the first line) is also printed: it is the one-line outcome in the flow's log.
    """
    key = f"{model_name}-{kind}".lower().replace("_", "-")
    print(markdown.splitlines()[0].removeprefix("# "))
    create_markdown_artifact(markdown=markdown, key=key, description=f"{kind} of {model_name}")
