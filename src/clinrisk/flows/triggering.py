"""Starting the retrain deployment from the monitor, at most once per cooldown.

The cooldown is read from the Prefect API itself (the retrain runs the monitor started, by
tag), so it holds across processes, workers and restarts with no state of our own.

A deployment name that is malformed or not registered is a bad parameter: it raises
`BadDeploymentError`, which is never retried. Anything else (the API unreachable, a 5xx) is an
outage, retried by the task; if it lasts, `outcome_of` turns it into "retrain not started: <why>".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from clinrisk.errors import ClinriskError
from clinrisk.monitoring.decision import cooldown_block

AUTO_RETRAIN_TAG = "auto-retrain"
NOT_STARTED = "retrain not started"


class BadDeploymentError(ClinriskError):
    """The `retrain_deployment` parameter names no deployment: fix the parameter, do not retry."""


def check_deployment_name(deployment_name: str) -> None:
    """Refuse a name that is not `<flow>/<deployment>` before any call to the API."""
    flow_name, _, name = deployment_name.partition("/")
    if not flow_name or not name or "/" in name:
        raise BadDeploymentError(
            f"retrain_deployment '{deployment_name}' is not '<flow>/<deployment>' (e.g. 'retrain/retrain')"
        )


def outcome_of(state) -> dict[str, Any]:
    """The trigger task's result, or why no retrain was started when it failed."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        return {"triggered": False, "blocked_by": f"{NOT_STARTED}: {result}", "error": type(result).__name__}
    return result


def raise_bad_parameter(outcome: dict[str, Any] | None) -> None:
    """Fail the flow (after its report is saved) when the trigger found a bad parameter."""
    if outcome and outcome.get("error") == BadDeploymentError.__name__:
        raise BadDeploymentError(outcome["blocked_by"])


def retrain_tags(model_name: str) -> list[str]:
    return [AUTO_RETRAIN_TAG, f"model:{model_name}"]


def last_auto_retrain(deployment_name: str, model_name: str, since: datetime) -> datetime | None:
    """When the monitor last started a retrain of this model (not before `since`), if it did."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=retrain_tags(model_name)),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return runs[0].expected_start_time if runs else None


def start_retrain(deployment_name: str, model_name: str, reason: str) -> dict[str, str]:
    """Create a run of the retrain deployment and return at once; a worker picks it up."""
    run = run_deployment(
        deployment_name,
        parameters={"model_name": model_name, "reason": reason},
        tags=retrain_tags(model_name),
        timeout=0,
        as_subflow=False,
    )
    return {"id": str(run.id), "name": run.name, "deployment": deployment_name}


def trigger_with_cooldown(
    deployment_name: str,
    model_name: str,
    causes: list[str],
    cooldown_hours: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Start a retrain unless one was started within the cooldown; say what happened and why."""
    now = now or datetime.now(UTC)
    check_deployment_name(deployment_name)
    try:
        last = last_auto_retrain(deployment_name, model_name, now - timedelta(hours=cooldown_hours))
    except ObjectNotFound:
        raise BadDeploymentError(
            f"retrain_deployment '{deployment_name}' is not a registered deployment"
        ) from None
    if blocked := cooldown_block(last, now, cooldown_hours):
        return {"triggered": False, "blocked_by": blocked}
    reason = "monitor: " + "; ".join(causes)
    return {
        "triggered": True,
        "blocked_by": None,
        "flow_run": start_retrain(deployment_name, model_name, reason),
    }
