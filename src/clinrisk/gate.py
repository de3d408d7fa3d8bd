"""The promotion gate's rules, as pure functions of per-row outcomes and 0/1 decisions.

Every rule decides on a confidence interval or a test, never on a point estimate that noise can
flip: holdout precision at a 0.15 operating point moves by ±0.02-0.03 between splits of ~50
positives. The rules, in the order they are applied (README, "The promotion gate"):

1. The challenger is refused only when its precision is *significantly* below the floor: the
   upper end of its Wilson interval is under the floor.
2. With no champion, the challenger is promoted, tagged with its interval (and a warning when
   the evaluation has fewer positives than the minimum).
3. A challenger never replaces a champion on an evaluation with fewer positives than
   `min_positives`: too small to tell them apart.
4. A champion whose precision is significantly below the floor is replaced.
5. Otherwise the two are compared on the same positives with McNemar's exact test: the
   challenger is refused only when it misses significantly more of them; on a tie the newer
   data wins.

Intervals use scipy's Wilson score interval (Wilson 1927, JASA 22:209; Brown, Cai & DasGupta
2001, Stat. Sci. 16:101); McNemar's exact test is the two-sided binomial test of the discordant
pairs (McNemar 1947, Psychometrika 12:153; Fagerland, Lydersen & Laake 2013, BMC Med Res
Methodol 13:91), via `scipy.stats.binomtest`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class Estimate:
    """A proportion `successes / trials` with its Wilson interval at `confidence`.

    `value` is NaN when `trials` is 0 (nothing to estimate); the interval is then [0, 1].
    """

    successes: int
    trials: int
    low: float
    high: float
    confidence: float

    @property
    def value(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    def contains(self, point: float) -> bool:
        return self.low <= point <= self.high

    def text(self) -> str:
        """E.g. `0.165 [0.121, 0.220] (33/200)`; `n/a` when nothing was counted."""
        shown = f"{self.value:.3f}" if self.trials else "n/a"
        return f"{shown} [{self.low:.3f}, {self.high:.3f}] ({self.successes}/{self.trials})"

    def to_dict(self) -> dict[str, Any]:
        rounded = {"low": round(self.low, 4), "high": round(self.high, 4)}
        return {**asdict(self), **rounded, "value": None if not self.trials else round(self.value, 4)}


@dataclass(frozen=True)
class GateRules:
    """The spec's gate settings: precision floor, significance level, minimum evaluation positives."""

    precision_floor: float
    alpha: float = 0.05
    min_positives: int = 30

    @property
    def confidence(self) -> float:
        return 1 - self.alpha


@dataclass
class PairedTest:
    """McNemar's exact test on the positives: who found which of them."""

    positives: int
    challenger_only: int
    champion_only: int
    p_value: float

    @property
    def challenger_worse(self) -> bool:
        return self.champion_only > self.challenger_only

    def text(self) -> str:
        return (
            f"McNemar exact p = {self.p_value:.3g} on {self.positives} positives "
            f"(challenger alone found {self.challenger_only}, champion alone {self.champion_only})"
        )


@dataclass
class GateDecision:
    """What the gate decided and every figure it decided on.

    `challenger`/`champion` hold point metrics at each model's own threshold; `intervals` holds
    the Wilson estimates (`challenger.precision`, `challenger.recall`, `champion.…`) as dicts;
    `p_value` is McNemar's (None without a paired comparison).
    """

    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    extra: dict = field(default_factory=dict)
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    p_value: float | None = None
    positives: int = 0
    rows: int = 0


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval of a binomial proportion (scipy.stats.binomtest.proportion_ci)."""
    if trials == 0:
        return Estimate(0, 0, 0.0, 1.0, confidence)
    found = binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return Estimate(int(successes), int(trials), float(found.low), float(found.high), confidence)


def _as_flags(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(int) == 1


def precision_estimate(outcomes: np.ndarray, decisions: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Share of flagged rows (decision 1) whose outcome is 1, with its interval."""
    flagged = _as_flags(decisions)
    return wilson(int((_as_flags(outcomes) & flagged).sum()), int(flagged.sum()), confidence)


def recall_estimate(outcomes: np.ndarray, decisions: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Share of rows with outcome 1 that were flagged, with its interval."""
    positive = _as_flags(outcomes)
    return wilson(int((positive & _as_flags(decisions)).sum()), int(positive.sum()), confidence)


def significantly_below(estimate: Estimate, floor: float) -> bool:
    """True only when the whole interval lies under the floor (a one-sided test at alpha/2)."""
    return estimate.trials > 0 and estimate.high < floor


def lowest_not_below(trials: int, floor: float, confidence: float = 0.95) -> float:
    """The smallest observable rate k/trials that is not significantly below `floor`.

    The point value a report's "≥" test must use to agree with the interval rule above:
    with 200 flagged rows and a 0.15 floor it is 0.105. With no trials, 0 (nothing is judged).
    """
    if trials == 0:
        return 0.0
    # The upper bound grows with the successes: bisect for the first count that reaches the floor.
    low, high = 0, trials
    while low < high:
        middle = (low + high) // 2
        if wilson(middle, trials, confidence).high >= floor:
            high = middle
        else:
            low = middle + 1
    return low / trials


def mcnemar_on_positives(
    outcomes: np.ndarray, challenger_decisions: np.ndarray, champion_decisions: np.ndarray
) -> PairedTest:
    """McNemar's exact test of the two models' recall on the same positive rows.

    Only positives where exactly one model flags the row carry information; under "equally
    good" each such row is a fair coin, so the two-sided binomial test of their split is exact.
    """
    positive = _as_flags(outcomes)
    challenger, champion = _as_flags(challenger_decisions)[positive], _as_flags(champion_decisions)[positive]
    only_challenger = int((challenger & ~champion).sum())
    only_champion = int((champion & ~challenger).sum())
    discordant = only_challenger + only_champion
    p_value = float(binomtest(only_challenger, discordant, 0.5).pvalue) if discordant else 1.0
    return PairedTest(int(positive.sum()), only_challenger, only_champion, p_value)


def _floor_reason(who: str, estimate: Estimate, floor: float) -> str:
    if significantly_below(estimate, floor):
        verdict = "significantly below"
    elif estimate.low >= floor:
        verdict = "above"
    else:
        verdict = "consistent with"
    return f"{who} precision {estimate.text()} is {verdict} the floor {floor:g}"


def decide(
    outcomes: np.ndarray,
    challenger_decisions: np.ndarray,
    champion_decisions: np.ndarray | None,
    rules: GateRules,
) -> GateDecision:
    """Apply the rules above to both models' 0/1 decisions on the same evaluation rows.

    Shapes: three 1-D arrays of equal length (outcome 0/1; each model's decision at its own
    threshold). Reasons name every estimate with its interval and the test's p-value.
    """
    confidence, floor = rules.confidence, rules.precision_floor
    precision = precision_estimate(outcomes, challenger_decisions, confidence)
    recall = recall_estimate(outcomes, challenger_decisions, confidence)
    decision = GateDecision(
        promote=False,
        reasons=[_floor_reason("challenger", precision, floor), f"challenger recall {recall.text()}"],
        challenger={"precision": precision.value, "recall": recall.value},
        intervals={"challenger.precision": precision.to_dict(), "challenger.recall": recall.to_dict()},
        positives=recall.trials,
        rows=len(np.asarray(outcomes)),
    )
    if champion_decisions is not None:
        _add_champion_estimates(decision, outcomes, champion_decisions, rules)
    if significantly_below(precision, floor):
        decision.reasons.append("the challenger's precision is significantly below the floor: not promoted")
        return decision
    if champion_decisions is None:
        return _first_model(decision, rules)
    return _against_champion(decision, outcomes, challenger_decisions, champion_decisions, rules)


def _first_model(decision: GateDecision, rules: GateRules) -> GateDecision:
    decision.promote = True
    decision.reasons.append("there is no champion yet")
    if decision.positives < rules.min_positives:
        decision.reasons.append(
            f"warning: the evaluation has {decision.positives} positives (fewer than {rules.min_positives}): "
            "the intervals are wide"
        )
    return decision


def _add_champion_estimates(
    decision: GateDecision, outcomes: np.ndarray, champion_decisions: np.ndarray, rules: GateRules
) -> None:
    """The champion's precision and recall on the same rows, in the reasons and the intervals."""
    precision = precision_estimate(outcomes, champion_decisions, rules.confidence)
    recall = recall_estimate(outcomes, champion_decisions, rules.confidence)
    decision.champion = {"precision": precision.value, "recall": recall.value}
    decision.intervals["champion.precision"] = precision.to_dict()
    decision.intervals["champion.recall"] = recall.to_dict()
    decision.reasons += [
        _floor_reason("champion", precision, rules.precision_floor),
        f"champion recall {recall.text()}",
    ]


def _against_champion(
    decision: GateDecision,
    outcomes: np.ndarray,
    challenger_decisions: np.ndarray,
    champion_decisions: np.ndarray,
    rules: GateRules,
) -> GateDecision:
    precision = precision_estimate(outcomes, champion_decisions, rules.confidence)
    if decision.positives < rules.min_positives:
        decision.reasons.append(
            f"the evaluation has {decision.positives} positives, fewer than the {rules.min_positives} needed "
            "to tell challenger and champion apart: the champion stays"
        )
        return decision
    if significantly_below(precision, rules.precision_floor):
        decision.promote = True
        decision.reasons.append("the champion's precision is significantly below the floor: replaced")
        return decision
    test = mcnemar_on_positives(outcomes, challenger_decisions, champion_decisions)
    decision.p_value = test.p_value
    significant = test.p_value < rules.alpha
    if significant and test.challenger_worse:
        decision.reasons.append(f"the challenger finds significantly fewer positives: {test.text()}")
        return decision
    decision.promote = True
    if significant:
        decision.reasons.append(f"the challenger finds significantly more positives: {test.text()}")
    else:
        decision.reasons.append(
            f"no significant difference at alpha {rules.alpha:g} ({test.text()}): the newer data wins"
        )
    return decision
