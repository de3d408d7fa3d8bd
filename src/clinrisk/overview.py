"""Every model with a spec, at a glance: its kind, objective and champion (`clinrisk models`)."""

from __future__ import annotations

from typing import Any

from clinrisk.errors import ClinriskError
from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec, load_spec

NO_CHAMPION = "no champion yet"


def objective_text(spec: ModelSpec) -> str:
    """The objective in words, e.g. `max recall, precision >= 0.15` or `R² >= 0.4`."""
    objective = spec.objective
    if spec.is_regression:
        return f"{objective.metric.replace('r2', 'R²')} >= {objective.floor:g} on unseen rows"
    return f"max {objective.maximise}, precision >= {objective.precision_floor:g}"


def champion_metrics(spec: ModelSpec, version: dict[str, Any]) -> dict[str, float | None]:
    """The champion's holdout metrics that its objective judges (R², or recall and precision)."""
    names = ["r2"] if spec.is_regression else ["recall", "precision"]
    return {name: version.get(name) for name in names}


def model_row(settings: Settings, name: str) -> dict[str, Any]:
    """One model's row: name, kind, objective, champion version and metrics (None: no champion).

    A spec that does not load is reported in the row's `error`, so one bad file hides no other model.
    """
    from clinrisk import registry

    try:
        spec = load_spec(settings.spec_path_for(name))
    except ClinriskError as exc:
        return {"name": name, "kind": None, "objective": None, "champion": None, "error": str(exc)}
    versions = registry.list_versions(settings, name)
    champion = next((v for v in versions if registry.CHAMPION in v["aliases"]), None)
    return {
        "name": name,
        "kind": spec.objective.kind,
        "objective": objective_text(spec),
        "champion": champion and champion["version"],
        "metrics": champion and champion_metrics(spec, champion),
        "versions": len(versions),
    }


def model_rows(settings: Settings) -> list[dict[str, Any]]:
    """A row (see `model_row`) for every spec in CLINRISK_SPEC_DIR, in name order."""
    from clinrisk.flows.deployments import model_names

    return [model_row(settings, name) for name in model_names(settings.spec_dir)]


def _shown(value: float | None) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def champion_text(row: dict[str, Any]) -> str:
    """`version 3 (recall 0.812, precision 0.171)`, or why there is none."""
    if row.get("error"):
        return f"spec error: {row['error']}"
    if row["champion"] is None:
        return NO_CHAMPION
    metrics = ", ".join(f"{name} {_shown(value)}" for name, value in row["metrics"].items())
    return f"version {row['champion']} ({metrics})"
