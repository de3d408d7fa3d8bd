"""The promotion gate, manual promotion and rollback.

A challenger becomes champion only when its holdout precision meets the floor and it is at
least as good as the champion on the very same holdout rows: recall at each model's own
threshold first, PR-AUC to break ties. Every decision is written as tags on the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from clinrisk import registry
from clinrisk.errors import NoChampionError, RegistryError
from clinrisk.evaluate import classification_metrics
from clinrisk.model import RiskModel
from clinrisk.settings import Settings

EPSILON = 1e-9


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    extra: dict = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def decide(challenger: dict[str, float], champion: dict[str, float] | None, floor: float) -> GateDecision:
    """Compare two models' metrics on identical rows; pure, so every rule is tested directly."""
    if challenger["precision"] + EPSILON < floor:
        reason = f"challenger precision {challenger['precision']:.3f} is below the floor {floor:g}"
        return GateDecision(False, [reason], challenger, champion)
    meets = f"challenger precision {challenger['precision']:.3f} meets the floor {floor:g}"
    if champion is None:
        return GateDecision(True, [meets, "there is no champion yet"], challenger, None)
    if champion["precision"] + EPSILON < floor:
        return GateDecision(
            True,
            [meets, f"champion precision {champion['precision']:.3f} breaches the floor"],
            challenger,
            champion,
        )
    recall_gap = challenger["recall"] - champion["recall"]
    comparison = f"recall {challenger['recall']:.3f} vs champion {champion['recall']:.3f}"
    if recall_gap > EPSILON:
        return GateDecision(True, [meets, f"higher {comparison}"], challenger, champion)
    if recall_gap < -EPSILON:
        return GateDecision(False, [meets, f"lower {comparison}"], challenger, champion)
    pr = f"PR-AUC {challenger['pr_auc']:.3f} vs champion {champion['pr_auc']:.3f}"
    promote = challenger["pr_auc"] + EPSILON >= champion["pr_auc"]
    return GateDecision(
        promote,
        [meets, f"equal {comparison}", ("not lower " if promote else "lower ") + pr],
        challenger,
        champion,
    )


def score_on(model: RiskModel, holdout: pd.DataFrame) -> dict[str, float]:
    """A model's metrics at its own threshold on the given labelled rows."""
    target = model.spec.target.column
    return classification_metrics(holdout[target], model.predict_proba(holdout), model.threshold)


def current_champion(settings: Settings, name: str) -> RiskModel | None:
    try:
        return registry.load_alias(settings, name, registry.CHAMPION)
    except NoChampionError:
        return None


def apply_gate(
    settings: Settings, version: str, challenger: RiskModel, holdout: pd.DataFrame
) -> GateDecision:
    """Score challenger and champion on the same rows, decide, record why, move the alias."""
    name = challenger.spec.name
    champion = current_champion(settings, name)
    decision = decide(
        score_on(challenger, holdout),
        score_on(champion, holdout) if champion else None,
        challenger.spec.objective.precision_floor,
    )
    decision.champion_version = champion.info.get("version") if champion else None
    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reasons": decision.reasons,
        "gate.decided_at": _now(),
        "gate.compared_with": decision.champion_version or "none",
        "gate.holdout_rows": str(len(holdout)),
    }
    registry.set_version_tags(settings, name, version, tags)
    if decision.promote:
        promote(settings, name, version, reason="; ".join(decision.reasons))
    return decision


def promote(settings: Settings, name: str, version: str, reason: str = "manual promotion") -> None:
    """Point `champion` at `version`, remembering the previous champion for rollback."""
    previous = registry.alias_version(settings, name, registry.CHAMPION)
    if previous == str(version):
        return
    registry.set_version_tags(
        settings,
        name,
        version,
        {"champion.previous": previous or "none", "champion.promoted_at": _now(), "champion.reason": reason},
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
    registry.set_alias(settings, name, registry.CHAMPION, previous)
    if registry.alias_version(settings, name, registry.CHALLENGER) == current:
        # Judged and withdrawn: it is no longer a candidate, and `models` must not say it is.
        registry.delete_alias(settings, name, registry.CHALLENGER)
    return current, previous
