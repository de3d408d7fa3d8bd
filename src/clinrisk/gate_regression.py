"""The promotion gate of a regression: R² on unseen rows, with bootstrap intervals.

Rules, in order (a pure function, so each one is tested directly):
1. The challenger's holdout R² must reach the spec's floor (e.g. 0.4), or it is refused.
2. With no champion, or a champion under the floor on the same rows, the challenger is promoted.
3. Otherwise the paired bootstrap interval of R²(challenger) - R²(champion) on the same rows
   decides: promoted when the whole 95 % interval is above 0, refused when it is below 0, and
   when it contains 0 (noise could flip the order) the champion is kept.

Kept apart from the classification gate (`clinrisk.promotion`) so each can change on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from clinrisk import registry
from clinrisk.data import validate_frame
from clinrisk.errors import DataValidationError
from clinrisk.evaluate import bootstrap_r2, regression_metrics
from clinrisk.model import RiskModel
from clinrisk.promotion import BY_GATE, GateDecision, hand_promoted_note, promote
from clinrisk.settings import Settings

CONFIDENCE = 0.95


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _r2_text(who: str, metrics: dict[str, float]) -> str:
    return f"{who} R² {metrics['r2']:.3f} [95 % CI {metrics['r2_low']:.3f}, {metrics['r2_high']:.3f}]"


def decide_regression(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    floor: float,
    difference: tuple[float, float] | None = None,
) -> GateDecision:
    """Apply the rules above to holdout metrics; `difference` is the paired ΔR² interval."""
    if challenger["r2"] < floor:
        return GateDecision(
            False,
            [f"{_r2_text('challenger', challenger)} is below the floor {floor:g}"],
            challenger,
            champion,
        )
    meets = f"{_r2_text('challenger', challenger)} meets the floor {floor:g}"
    if champion is None:
        return GateDecision(True, [meets, "there is no champion yet"], challenger, None)
    if champion["r2"] < floor:
        reason = f"{_r2_text('champion', champion)} is below the floor on the same rows"
        return GateDecision(True, [meets, reason], challenger, champion)
    low, high = difference if difference is not None else (float("-inf"), float("inf"))
    gap = f"ΔR² vs champion 95 % CI [{low:.3f}, {high:.3f}]"
    if low > 0:
        return GateDecision(True, [meets, f"better than the champion: {gap}"], challenger, champion)
    if high < 0:
        return GateDecision(False, [meets, f"worse than the champion: {gap}"], challenger, champion)
    return GateDecision(
        False,
        [meets, f"no credible difference from the champion ({gap}): champion kept"],
        challenger,
        champion,
    )


def score_regression_on(model: RiskModel, holdout: pd.DataFrame, rounds: int) -> tuple[dict, np.ndarray]:
    """A model's R² (with interval), RMSE and MAE on labelled rows, and its predictions.

    The rows are re-validated with the model's own spec: a champion trained on another
    version of the spec names its columns its own way. Raises DataValidationError if it cannot.
    """
    rows = validate_frame(holdout, model.spec, require_target=True)
    predicted = model.predict_value(rows)
    return regression_metrics(rows[model.spec.target.column], predicted, rounds), predicted


def _judge(
    challenger: RiskModel,
    mine: dict[str, float],
    predicted: np.ndarray,
    evaluation: pd.DataFrame,
    champion: RiskModel | None,
) -> GateDecision:
    """The decision; the champion is scored only when the challenger meets the floor.

    A challenger under the floor is refused whatever the champion does. A champion that cannot be
    scored on these rows (trained on other features) is kept: nothing shows the challenger is better.
    """
    spec = challenger.spec
    floor, rounds = spec.objective.floor, spec.objective.bootstrap_rounds
    if champion is None or mine["r2"] < floor:
        return decide_regression(mine, None, floor)
    try:
        theirs, baseline = score_regression_on(champion, evaluation, rounds)
    except (DataValidationError, KeyError) as exc:
        meets = f"{_r2_text('challenger', mine)} meets the floor {floor:g}"
        return GateDecision(
            False, [meets, f"the champion cannot be scored on these rows ({exc}): champion kept"], mine
        )
    y = evaluation[spec.target.column]
    difference = _interval(bootstrap_r2(y, predicted, rounds, baseline=baseline))
    decision = decide_regression(mine, theirs, floor, difference)
    decision.extra["delta_r2"] = difference
    return decision


def apply_regression_gate(
    settings: Settings,
    version: str,
    challenger: RiskModel,
    evaluation: pd.DataFrame,
    champion: RiskModel | None,
) -> GateDecision:
    """Score challenger and champion on the same `evaluation` rows, decide, record why, move the alias.

    `evaluation` holds labelled rows neither model trained on; `champion` is the current
    champion, loaded once by the caller (None when there is none).
    """
    spec = challenger.spec
    rounds = spec.objective.bootstrap_rounds
    mine, predicted = score_regression_on(challenger, evaluation, rounds)
    decision = _judge(challenger, mine, predicted, evaluation, champion)
    decision.champion_version = str(champion.info.get("version")) if champion else None
    decision.rows = len(evaluation)
    if decision.promote and (note := hand_promoted_note(settings, spec.name, decision.champion_version)):
        decision.reasons.append(f"{note}; replaced because the gate's rules above allow it")
    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reasons": decision.reasons,
        "gate.decided_at": _now(),
        "gate.compared_with": decision.champion_version or "none",
        "gate.evaluation_rows": str(len(evaluation)),
        "gate.challenger.r2": _r2_text("challenger", mine),
    }
    if (difference := decision.extra.get("delta_r2")) is not None:
        tags["gate.delta_r2"] = f"95 % CI [{difference[0]:.3f}, {difference[1]:.3f}]"
    registry.set_version_tags(settings, spec.name, version, tags)
    if decision.promote:
        promote(settings, spec.name, version, reason="; ".join(decision.reasons), how=BY_GATE)
    return decision
