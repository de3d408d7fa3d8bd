"""The Prefect deployments of every model: prefect.yaml's templates, copied once per model spec.

prefect.yaml declares each flow's deployment once (entrypoint, work pool, the first model's
schedules). `expand` gives every spec in CLINRISK_SPEC_DIR its own copy, named after the model
(`retrain/stroke`, `monitor/diabetes`), with `model_name` set, monitor pointed at the same model's
retrain, and schedules staggered so that the models do not all train at once. A new spec therefore
needs no edit of prefect.yaml: the next `clinrisk flows deploy` (or `clinrisk up`) registers its
deployments. The expanded file is written to `<CLINRISK_HOME>/prefect-deployments.yaml` and
registered with `prefect deploy --all --prefect-file` from the project root, so Prefect's own
build and pull steps (the project root at run time) apply unchanged.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from clinrisk.errors import ClinriskError
from clinrisk.settings import MODEL_NAME

# How far each model's schedule is moved from the previous model's, by flow; models in name order.
# Retrains are the heavy runs: 30 minutes apart, so one ends before the next starts on 2 cores.
CRON_STAGGER_MINUTES = {"retrain": 30, "monitor": 10}
INTERVAL_STAGGER = timedelta(minutes=1)
# Interval schedules count from this instant (plus each model's stagger).
INTERVAL_ANCHOR = datetime(2026, 1, 5, tzinfo=UTC)


def model_names(spec_dir: Path) -> list[str]:
    """The models with a spec in `spec_dir` (`<name>.yaml`), in name order."""
    return sorted(p.stem for p in Path(spec_dir).glob("*.yaml") if MODEL_NAME.fullmatch(p.stem))


def full_name(flow: str, model: str) -> str:
    """The deployment of `flow` for `model`, as Prefect names it: `flow/model`."""
    return f"{flow}/{model}"


def read_templates(project_dir: Path) -> dict[str, Any]:
    """The project's prefect.yaml, whose deployments are the per-flow templates."""
    path = project_dir / "prefect.yaml"
    if not path.is_file():
        raise ClinriskError(f"no prefect.yaml in {project_dir}: run from the project's checkout")
    return yaml.safe_load(path.read_text()) or {}


def expand(config: dict[str, Any], models: list[str], keep: set[str] | None = None) -> dict[str, Any]:
    """prefect.yaml with each template deployment repeated for every model (template order, then
    model order), only the full names in `keep` when given; build, push and pull steps as they are."""
    expanded = {k: v for k, v in config.items() if k != "definitions"}  # its anchors are resolved
    expanded["deployments"] = [
        for_model(template, model, index)
        for template in config.get("deployments") or []
        for index, model in enumerate(models)
        if keep is None or full_name(template["name"], model) in keep
    ]
    return expanded


def planned(config: dict[str, Any], models: list[str]) -> list[str]:
    """The full name of every deployment `expand` makes: `flow/model`."""
    return [full_name(t["name"], model) for t in config.get("deployments") or [] for model in models]


def for_model(template: dict[str, Any], model: str, index: int) -> dict[str, Any]:
    """One template deployment for `model`, the `index`-th model: renamed, parametrised, staggered."""
    flow = template["name"]
    deployment = copy.deepcopy(template)
    deployment["name"] = model
    deployment["description"] = f"{model}: {template.get('description', '')}".strip()
    deployment["tags"] = [*template.get("tags", []), f"model:{model}"]
    parameters = deployment.setdefault("parameters", {})
    parameters["model_name"] = model
    if flow == "monitor":
        parameters["retrain_deployment"] = full_name("retrain", model)
    if "schedules" in deployment:
        deployment["schedules"] = [stagger(s, flow, index) for s in deployment["schedules"]]
    return deployment


def stagger(schedule: dict[str, Any], flow: str, index: int) -> dict[str, Any]:
    """A schedule moved by the `index`-th model's offset: later minutes of the day for a cron
    `M H ...` (wrapping at midnight), a later anchor for an interval. Other crons are kept as is."""
    moved = dict(schedule)
    if "cron" in moved:
        moved["cron"] = shift_cron(moved["cron"], index * CRON_STAGGER_MINUTES.get(flow, 0))
    elif "interval" in moved:
        moved.setdefault("anchor_date", (INTERVAL_ANCHOR + index * INTERVAL_STAGGER).isoformat())
    return moved


def shift_cron(cron: str, minutes: int) -> str:
    """`cron` with its fixed minute and hour moved by `minutes`; unchanged unless both are numbers."""
    fields = cron.split()
    if minutes == 0 or len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()):
        return cron
    hour, minute = divmod((int(fields[1]) * 60 + int(fields[0]) + minutes) % (24 * 60), 60)
    return " ".join([str(minute), str(hour), *fields[2:]])


def write_config(config: dict[str, Any], path: Path) -> Path:
    """Write an expanded config for `prefect deploy --prefect-file`; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by clinrisk from prefect.yaml and the model specs; edits are overwritten.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path
