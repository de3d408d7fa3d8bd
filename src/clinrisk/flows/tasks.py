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

from clinrisk import predict, registry, retraining, train
from clinrisk.errors import DataValidationError, NoChampionError, NoThresholdError, SpecError
from clinrisk.flows import triggering
from clinrisk.monitoring import comparison, monitor, store

RETRY_DELAYS_SECONDS = [2, 10, 30]
NOT_RETRIED = (DataValidationError, SpecError, NoChampionError, NoThresholdError)


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

# Retraining.
load_training_data = io_task(retraining.load_and_validate, name="load-and-validate-data")
train_candidates = compute_task(train.train_model, name="train-candidates-and-threshold")
log_and_register = io_task(registry.log_and_register, name="log-and-register")
champion_version = io_task(registry.alias_version, name="read-champion-version")
apply_gate = io_task(retraining.apply_gate_for, name="promotion-gate")
compare_on_holdout = io_task(comparison.compare_on_holdout, name="evidently-holdout-comparison")

# Monitoring.
load_champion = io_task(registry.load_alias, name="load-champion")
read_current = io_task(monitor.read_current, name="read-current-window")
load_reference = io_task(monitor.reference_for, name="load-reference")
prepare_rows = compute_task(monitor.prepare, name="validate-and-score")
evaluate = compute_task(monitor.evaluate, name="evidently-checks")
trigger_retrain = io_task(triggering.trigger_with_cooldown, name="trigger-retrain")
publish_report = io_task(store.publish, name="save-report")
record_in_registry = io_task(store.record_in_registry, name="log-report-to-mlflow")

# Batch scoring.
score_file = io_task(predict.score_file, name="score-file")


@compute_task(name="publish-artifact")
def publish_artifact(kind: str, model_name: str, markdown: str) -> None:
    """Show a markdown summary on the flow run's Artifacts tab (keyed per model and flow)."""
    key = f"{model_name}-{kind}".lower().replace("_", "-")
    create_markdown_artifact(markdown=markdown, key=key, description=f"{kind} of {model_name}")
