"""The retrain report: the challenger against the champion it was gated with, on the same holdout.

Every quality figure, ours and Evidently's, comes from each model's 0/1 decisions at its own
threshold; the header adds the gate's intervals and p-value.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from clinrisk import registry
from clinrisk.evaluate import classification_metrics, regression_metrics
from clinrisk.fairness import clear_gaps, slice_report
from clinrisk.model import RiskModel
from clinrisk.monitoring import store
from clinrisk.monitoring.schema import OUTCOME, PREDICTION, PROBABILITY, floors_for
from clinrisk.promotion import GateDecision
from clinrisk.settings import Settings

log = logging.getLogger(__name__)

METRICS = ("recall", "precision", "pr_auc", "roc_auc", "f1", "flagged_share", "brier")


def scored_holdout(model: RiskModel, holdout: pd.DataFrame) -> pd.DataFrame:
    """Holdout features with the true outcome and this model's probability and decision."""
    spec = model.spec
    frame = holdout[spec.feature_names].copy()
    frame[OUTCOME] = holdout[spec.target.column].to_numpy()
    scored = model.predict(frame)
    if model.is_regression:
        frame[PREDICTION] = scored["prediction"]
        return frame
    frame[PROBABILITY], frame[PREDICTION] = scored["probability"], scored["prediction"]
    return frame


def _metrics(frame: pd.DataFrame, model: RiskModel) -> dict[str, float]:
    if model.is_regression:
        return {k: round(v, 4) for k, v in regression_metrics(frame[OUTCOME], frame[PREDICTION]).items()}
    found = classification_metrics(frame[OUTCOME], frame[PROBABILITY], model.threshold)
    return {k: round(found[k], 4) for k in METRICS}


def _slices(spec, scored: pd.DataFrame) -> list[dict]:
    """Recall, precision and share flagged per spec slice on the scored holdout (none for a regression)."""
    if spec.is_regression:
        return []
    return slice_report(spec, scored, scored[OUTCOME], scored[PREDICTION])


def _champion_scored(champion: RiskModel | None, holdout: pd.DataFrame) -> pd.DataFrame | None:
    """The champion's scored holdout; None without a champion, or when it was trained on features
    these rows lack (another spec): the report then shows the challenger alone."""
    if champion is None:
        return None
    try:
        return scored_holdout(champion, holdout)
    except KeyError as exc:
        log.warning(
            "champion v%s cannot score these rows (%s): compared with none", champion.info.get("version"), exc
        )
        return None


def compare_on_holdout(
    settings: Settings,
    challenger: RiskModel,
    version: str,
    holdout: pd.DataFrame,
    decision: GateDecision,
    champion_version: str | None,
    reason: str,
    data_source: str,
) -> Path:
    """Write the Evidently comparison, list it in the index, log it to the challenger's run."""
    now = datetime.now(UTC)
    spec = challenger.spec
    champion = registry.load_version(settings, spec.name, champion_version) if champion_version else None
    current = scored_holdout(challenger, holdout)
    reference = _champion_scored(champion, holdout)
    from clinrisk.monitoring import reports  # Evidently loads slowly: only when a report is made

    floors = floors_for(settings, spec)
    against = f"champion v{champion_version}" if champion_version else "no champion yet"
    title = f"{spec.name} v{version} vs {against}"
    snapshot = reports.comparison_snapshot(
        spec, current, reference, floors, {"title": title, "model_version": version}
    )
    summary = {
        "kind": "retrain",
        "model": spec.name,
        "model_version": str(version),
        "champion_version": champion_version,
        "created_at": now.isoformat(timespec="seconds"),
        "window": {"start": None, "end": None, "source": data_source},
        "rows": len(holdout),
        "challenger_metrics": _metrics(current, challenger),
        "champion_metrics": _metrics(reference, champion) if reference is not None else None,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        # The figures the gate decided on: Wilson estimates (challenger./champion. precision and
        # recall) and McNemar's p-value, so the header shows what the Evidently panels cannot.
        "gate": {
            "intervals": decision.intervals,
            "p_value": decision.p_value,
            "positives": decision.positives,
            "rows": decision.rows,
        },
        "reason": reason,
        "failed_tests": reports.facts(snapshot).failed_tests,
        "slices": _slices(spec, current),
        "champion_slices": _slices(spec, reference) if reference is not None else None,
    }
    summary["slice_gaps"] = clear_gaps(summary["slices"])
    html = store.publish(settings.reports_dir, settings.evidently_workspace, snapshot, summary, now)
    store.record_in_registry(settings, spec.name, version, html, summary)
    return html
