"""The promotion gate's rules as pure functions of outcomes and 0/1 decisions (no registry)."""

from __future__ import annotations

import numpy as np
import pytest

from clinrisk.gate import (
    GateRules,
    decide,
    lowest_not_below,
    mcnemar_on_positives,
    precision_estimate,
    recall_estimate,
    significantly_below,
    wilson,
)


def wilson_by_hand(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's closed form (Brown, Cai & DasGupta 2001, eq. 4), written out independently."""
    p = successes / trials
    centre = (p + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z / (1 + z**2 / trials) * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
    return centre - half, centre + half


RULES = GateRules(precision_floor=0.15, alpha=0.05, min_positives=30)


def rows(tp: int, fp: int, fn: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and decisions with the given confusion-matrix counts."""
    outcomes = np.array([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    decisions = np.array([1] * tp + [1] * fp + [0] * fn + [0] * tn)
    return outcomes, decisions


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (3, 20), (33, 200), (50, 50), (1, 1)])
def test_wilson_matches_an_independent_implementation(successes, trials):
    """The interval agrees with Wilson's closed form and contains the estimate."""
    found = wilson(successes, trials, 0.95)
    low, high = wilson_by_hand(successes, trials)
    assert found.low == pytest.approx(low, abs=1e-9) and found.high == pytest.approx(high, abs=1e-9)
    assert found.low <= found.value <= found.high


def test_wilson_of_nothing_is_the_whole_unit_interval():
    """With no trials the estimate is undefined and the interval is [0, 1]."""
    found = wilson(0, 0)
    assert (found.low, found.high) == (0.0, 1.0) and np.isnan(found.value)
    assert "n/a" in found.text()


def test_precision_and_recall_count_the_right_rows():
    """Precision counts flagged rows, recall counts positive rows."""
    outcomes, decisions = rows(tp=8, fp=40, fn=2, tn=950)
    precision, recall = precision_estimate(outcomes, decisions), recall_estimate(outcomes, decisions)
    assert (precision.successes, precision.trials) == (8, 48)
    assert (recall.successes, recall.trials) == (8, 10)


@pytest.mark.parametrize(
    ("tp", "fp", "below"),
    [
        (20, 113, False),  # 0.150: on the floor
        (13, 120, False),  # 0.098 but the interval reaches 0.15 on 133 flagged rows
        (40, 460, True),  # 0.080 on 500 flagged rows: the whole interval is under the floor
        (0, 0, False),  # nothing flagged: undefined, never "significantly below"
        (0, 30, True),  # none of 30 flagged rows was positive
    ],
)
def test_significantly_below_needs_the_whole_interval_under_the_floor(tp, fp, below):
    """The floor check refuses only when the upper confidence bound is under the floor."""
    outcomes, decisions = rows(tp=tp, fp=fp, fn=10, tn=1000)
    assert significantly_below(precision_estimate(outcomes, decisions), 0.15) is below


@pytest.mark.parametrize(("trials", "floor"), [(200, 0.15), (454, 0.15), (49, 0.5), (20, 0.15), (5000, 0.15)])
def test_lowest_rate_not_below_the_floor_is_where_the_interval_starts_to_reach_it(trials, floor):
    """At that count the interval reaches the floor; one success fewer and it does not."""
    cutoff = lowest_not_below(trials, floor)
    successes = round(cutoff * trials)
    assert wilson(successes, trials).high >= floor
    assert successes == 0 or wilson(successes - 1, trials).high < floor


def test_lowest_rate_examples():
    """200 flagged rows need 21 strokes (0.105) to stay consistent with a 0.15 floor; none need 0."""
    assert lowest_not_below(200, 0.15) == pytest.approx(0.105)
    assert lowest_not_below(0, 0.15) == 0.0


def test_mcnemar_counts_only_discordant_positives():
    """Rows both or neither model flag, and negatives, do not enter the test."""
    outcomes = np.array([1, 1, 1, 1, 1, 0, 0])
    challenger = np.array([1, 1, 0, 1, 0, 1, 0])
    champion = np.array([1, 0, 1, 1, 0, 0, 1])
    test = mcnemar_on_positives(outcomes, challenger, champion)
    assert (test.positives, test.challenger_only, test.champion_only) == (5, 1, 1)
    assert test.p_value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("challenger_only", "champion_only", "p_value"),
    [(0, 0, 1.0), (0, 6, 2 * 0.5**6), (10, 0, 2 * 0.5**10), (3, 9, 0.146)],
)
def test_mcnemar_exact_p_value(challenger_only, champion_only, p_value):
    """The p-value is the two-sided binomial test of the discordant split."""
    both = 20
    outcomes = np.ones(both + challenger_only + champion_only, dtype=int)
    challenger = np.array([1] * both + [1] * challenger_only + [0] * champion_only)
    champion = np.array([1] * both + [0] * challenger_only + [1] * champion_only)
    assert mcnemar_on_positives(outcomes, challenger, champion).p_value == pytest.approx(p_value, abs=1e-3)


def paired(both: int, challenger_only: int, champion_only: int, neither: int, fp: int, negatives: int = 2000):
    """Outcomes and both models' decisions: positives split as given, `fp` false alarms each."""
    positives = both + challenger_only + champion_only + neither
    outcomes = np.array([1] * positives + [0] * negatives)
    challenger = np.array([1] * both + [1] * challenger_only + [0] * (champion_only + neither))
    champion = np.array([1] * both + [0] * challenger_only + [1] * champion_only + [0] * neither)
    alarms = np.array([1] * fp + [0] * (negatives - fp))
    return outcomes, np.concatenate([challenger, alarms]), np.concatenate([champion, alarms])


def test_first_model_whose_interval_contains_the_floor_is_promoted_with_the_interval():
    """Precision 0.13 on 100 flagged rows is not significantly below 0.15: promoted, interval tagged."""
    outcomes, decisions = rows(tp=13, fp=87, fn=4, tn=900)
    decision = decide(outcomes, decisions, None, RULES)
    assert decision.promote
    assert "consistent with the floor" in decision.reasons[0] and "[0.0" in decision.reasons[0]
    assert "there is no champion yet" in decision.reasons
    assert decision.intervals["challenger.precision"]["trials"] == 100


def test_first_model_significantly_below_the_floor_is_refused():
    """A first model whose whole precision interval is under the floor is refused."""
    outcomes, decisions = rows(tp=30, fp=470, fn=10, tn=1000)
    decision = decide(outcomes, decisions, None, RULES)
    assert not decision.promote
    assert "significantly below the floor" in decision.reasons[0]


def test_a_challenger_significantly_below_the_floor_is_refused_with_the_champion_still_shown():
    """Against a champion, a challenger under the floor is refused; both models' estimates are kept."""
    outcomes = np.array([1] * 50 + [0] * 3000)
    challenger = np.array([1] * 45 + [0] * 5 + [1] * 1000 + [0] * 2000)
    champion = np.array([1] * 40 + [0] * 10 + [1] * 200 + [0] * 2800)
    decision = decide(outcomes, challenger, champion, RULES)
    assert not decision.promote and "challenger precision" in decision.reasons[0]
    assert "significantly below" in decision.reasons[0]
    assert {"champion.precision", "champion.recall"} <= set(decision.intervals)
    assert decision.champion["recall"] == pytest.approx(0.8)


def test_first_model_on_few_positives_is_promoted_with_a_warning():
    """With no champion to keep, a small evaluation still gives a champion, flagged as uncertain."""
    outcomes, decisions = rows(tp=1, fp=2, fn=0, tn=9)
    decision = decide(outcomes, decisions, None, RULES)
    assert decision.promote
    assert any("1 positives (fewer than 30)" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("challenger_only", "champion_only", "promote", "reason"),
    [
        (0, 0, True, "the newer data wins"),  # identical models: a tie
        (2, 5, True, "the newer data wins"),  # worse but not significantly
        (0, 9, False, "significantly fewer positives"),
        (10, 1, True, "significantly more positives"),
    ],
)
def test_challenger_is_refused_only_when_significantly_worse(challenger_only, champion_only, promote, reason):
    """McNemar's test on 50 positives decides; a tie promotes the challenger (newer data)."""
    neither = 20 - challenger_only - champion_only
    outcomes, challenger, champion = paired(30, challenger_only, champion_only, neither, 150)
    decision = decide(outcomes, challenger, champion, RULES)
    assert decision.promote is promote
    assert reason in decision.reasons[-1] and "McNemar exact p =" in decision.reasons[-1]
    assert decision.p_value is not None and decision.positives == 50


def test_too_few_positives_never_replace_a_champion():
    """A perfect challenger on 5 positives does not replace the champion, and the reasons say why."""
    outcomes, challenger, champion = paired(1, 4, 0, 0, fp=2, negatives=55)
    decision = decide(outcomes, challenger, champion, RULES)
    assert not decision.promote
    assert "5 positives, fewer than the 30 needed" in decision.reasons[-1]
    assert decision.p_value is None


def test_a_champion_significantly_below_the_floor_is_replaced():
    """A challenger within the floor replaces a champion whose precision is significantly under it."""
    outcomes = np.array([1] * 50 + [0] * 3000)
    challenger = np.array([1] * 30 + [0] * 20 + [1] * 150 + [0] * 2850)
    champion = np.array([1] * 40 + [0] * 10 + [1] * 900 + [0] * 2100)
    decision = decide(outcomes, challenger, champion, RULES)
    assert decision.promote
    assert "champion's precision is significantly below the floor" in decision.reasons[-1]


def test_every_estimate_is_named_with_its_interval():
    """Reasons carry challenger and champion precision and recall, each with an interval."""
    outcomes, challenger, champion = paired(30, 3, 3, 14, 150)
    decision = decide(outcomes, challenger, champion, RULES)
    text = " ".join(decision.reasons)
    for name in ("challenger precision", "challenger recall", "champion precision", "champion recall"):
        assert name in text
    assert text.count("[") == 4
    assert set(decision.intervals) == {
        "challenger.precision",
        "challenger.recall",
        "champion.precision",
        "champion.recall",
    }
