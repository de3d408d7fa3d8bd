"""The promotion gate applied to a registered version, manual promotion and rollback.

The rules themselves are pure functions in `clinrisk.gate`; this module scores the challenger
and the champion on the same evaluation rows, records the decision with every estimate, its
interval and the test's p-value as tags on the version, and moves the `champion` alias.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from clinrisk import bundle, registry, signing
from clinrisk.errors import NoChampionError, RegistryError
from clinrisk.evaluate import classification_metrics
from clinrisk.gate import Estimate, GateDecision, GateRules, decide
from clinrisk.model import RiskModel
from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec

__all__ = ["GateDecision", "apply_gate", "current_champion", "promote", "rollback", "score_on"]

# How the champion alias was moved last: by the gate, or by a person with `clinrisk promote`.
BY_GATE, BY_HAND = "gate", "manual"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rules_for(spec: ModelSpec) -> GateRules:
    return GateRules(spec.objective.precision_floor, spec.gate.alpha, spec.gate.min_positives)


def score_on(model: RiskModel, rows: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    """A model's 0/1 decisions at its own threshold on labelled rows, and its metrics there."""
    proba = model.predict_proba(rows)
    metrics = classification_metrics(rows[model.spec.target.column], proba, model.threshold)
    return model.decide(proba), metrics


def current_champion(settings: Settings, name: str) -> RiskModel | None:
    try:
        return registry.load_alias(settings, name, registry.CHAMPION)
    except NoChampionError:
        return None


def gate_tags(decision: GateDecision) -> dict[str, str]:
    """The decision as version tags: verdict, reasons, every estimate with its interval, p-value."""
    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reasons": decision.reasons,
        "gate.decided_at": _now(),
        "gate.compared_with": decision.champion_version or "none",
        "gate.evaluation_rows": str(decision.rows),
        "gate.evaluation_positives": str(decision.positives),
        "gate.p_value": "none" if decision.p_value is None else f"{decision.p_value:.4g}",
    }
    for key, found in decision.intervals.items():
        tags[f"gate.{key}"] = Estimate(**{k: found[k] for k in Estimate.__dataclass_fields__}).text()
    return tags


def hand_promoted_note(settings: Settings, name: str, version: str | None) -> str | None:
    """A reason line when the champion the gate replaces was put there by hand."""
    if version is None:
        return None
    tags = registry.version_tags(settings, name, version)
    if tags.get("champion.promoted_how") != BY_HAND:
        return None
    return f"champion v{version} was promoted by hand ({tags.get('champion.reason', 'no reason given')})"


def apply_gate(
    settings: Settings,
    version: str,
    challenger: RiskModel,
    evaluation: pd.DataFrame,
    champion: RiskModel | None,
) -> GateDecision:
    """Score challenger and champion on the same `evaluation` rows, decide, record why, move the alias.

    `evaluation` holds labelled rows neither model trained on (features and the spec's target);
    `champion` is the current champion, loaded once by the caller (None when there is none).
    """
    name = challenger.spec.name
    outcomes = evaluation[challenger.spec.target.column].to_numpy()
    challenger_decisions, challenger_metrics = score_on(challenger, evaluation)
    champion_decisions, champion_metrics = score_on(champion, evaluation) if champion else (None, None)
    decision = decide(outcomes, challenger_decisions, champion_decisions, rules_for(challenger.spec))
    decision.challenger = {**challenger_metrics, **decision.challenger}
    decision.champion = {**champion_metrics, **(decision.champion or {})} if champion else None
    decision.champion_version = str(champion.info.get("version")) if champion else None
    if decision.promote and (note := hand_promoted_note(settings, name, decision.champion_version)):
        decision.reasons.append(f"{note}; replaced because the gate's rules above allow it")
    registry.set_version_tags(settings, name, version, gate_tags(decision))
    if decision.promote:
        promote(settings, name, version, reason="; ".join(decision.reasons), how=BY_GATE)
    return decision


def acting_user() -> str:
    """Who moves the alias: the MLflow account when there is one, else the OS user."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def sign_promotion(settings: Settings, name: str, version: str, *, how: str, reason: str) -> None:
    """Tag `version` with a promotion record signed by the key the registry cannot write."""
    run_id = registry.version_run_id(settings, name, version)
    record = bundle.promotion_record(
        signing.load_key(settings),
        name=name,
        version=str(version),
        run_id=run_id,
        by=acting_user(),
        how=how,
        reason=reason,
    )
    registry.set_version_tags(settings, name, version, record)


def promote(
    settings: Settings, name: str, version: str, reason: str = "manual promotion", how: str = BY_HAND
) -> None:
    """Sign a promotion record, then point `champion` at `version` (the previous one kept for rollback)."""
    previous = registry.alias_version(settings, name, registry.CHAMPION)
    if previous == str(version):
        return
    sign_promotion(settings, name, version, how=how, reason=reason)
    registry.set_version_tags(
        settings,
        name,
        version,
        {
            "champion.previous": previous or "none",
            "champion.promoted_at": _now(),
            "champion.reason": reason,
            "champion.promoted_by": acting_user(),
            "champion.promoted_how": how,
        },
    )
    registry.set_alias(settings, name, registry.CHAMPION, version)


def rollback(settings: Settings, name: str, reason: str = "manual rollback") -> tuple[str, str]:
    """Re-point `champion` to the champion before it; returns (from_version, to_version)."""
    current = registry.alias_version(settings, name, registry.CHAMPION)
    if current is None:
        raise NoChampionError(f"'{name}' has no champion to roll back")
    previous = registry.version_tags(settings, name, current).get("champion.previous", "none")
    if previous == "none":
        raise RegistryError(
            f"{name} version {current} is the first champion: there is nothing to roll back to"
        )
    registry.set_version_tags(
        settings, name, current, {"champion.rolled_back_at": _now(), "champion.rollback_reason": reason}
    )
    registry.set_version_tags(
        settings, name, previous, {"champion.restored_at": _now(), "champion.restored_reason": reason}
    )
    sign_promotion(settings, name, previous, how="rollback", reason=reason)
    registry.set_alias(settings, name, registry.CHAMPION, previous)
    if registry.alias_version(settings, name, registry.CHALLENGER) == current:
        # Judged and withdrawn: it is no longer a candidate, and `models` must not say it is.
        registry.delete_alias(settings, name, registry.CHALLENGER)
    return current, previous
