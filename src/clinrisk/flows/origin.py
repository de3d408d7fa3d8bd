"""Who started a flow run: its schedule, a person (Prefect UI or API, or `clinrisk flows run`), or
the monitor. Read from the run itself, so a manual run is never recorded as scheduled."""

from __future__ import annotations

from clinrisk.flows.triggering import AUTO_RETRAIN_TAG

CLI_TAG = "started-by:cli"
# Deployments registered before the run's origin was recorded pass this for every run.
LEGACY_DEFAULT = "scheduled"


def started_by(explicit: str | None = None) -> str:
    """`explicit` when given; else schedule, monitoring, CLI, UI or API, or a direct call."""
    if explicit and explicit != LEGACY_DEFAULT:
        return explicit
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None:
        return "direct call (no Prefect run)"
    if AUTO_RETRAIN_TAG in run.tags:
        return "monitoring"
    if CLI_TAG in run.tags:
        return "CLI (clinrisk flows run)"
    if run.auto_scheduled:
        return "schedule"
    if run.deployment_id is not None:
        return "Prefect UI or API (manual run)"
    return "direct call of the flow"
