"""Code tier: choosing the threshold under the precision floor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_score, recall_score

from clinrisk.errors import NoThresholdError
from clinrisk.threshold import choose_threshold


def test_it_returns_the_highest_recall_point_that_meets_the_floor():
    """Of the thresholds meeting precision 0.5, it picks the one finding the most positives."""
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2, 0.1])
    choice = choose_threshold(y, scores, precision_floor=0.5)
    # Flagging >= 0.4 finds all 4 positives among 7 flagged (precision 0.57); lower thresholds fall below 0.5.
    assert choice.threshold == pytest.approx(0.4)
    assert choice.recall == 1.0
    assert choice.precision == pytest.approx(4 / 7)


def test_the_margin_makes_the_choice_stricter():
    """A safety margin raises the precision the threshold must reach."""
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2, 0.1])
    loose = choose_threshold(y, scores, precision_floor=0.5)
    strict = choose_threshold(y, scores, precision_floor=0.5, safety_margin=0.2)
    assert strict.threshold > loose.threshold
    assert strict.precision >= 0.7


def test_it_says_clearly_when_no_threshold_meets_the_floor():
    """It raises NoThresholdError giving the best precision reachable."""
    y = np.array([0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    with pytest.raises(NoThresholdError, match=r"best precision at any threshold is 0\.250"):
        choose_threshold(y, scores, precision_floor=0.5)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=5, max_size=80).filter(lambda v: 0 < sum(v) < len(v)),
    seed=st.integers(0, 10_000),
    floor=st.floats(0.05, 0.9),
)
def test_the_chosen_threshold_meets_the_floor_on_the_data_it_was_chosen_on(labels, seed, floor):
    """Whatever the data, the threshold meets the floor and no feasible threshold has more recall."""
    y = np.array(labels)
    scores = np.random.default_rng(seed).random(len(y)) + 0.3 * y
    try:
        choice = choose_threshold(y, scores, precision_floor=floor)
    except NoThresholdError:
        return
    flagged = (scores >= choice.threshold).astype(int)
    assert precision_score(y, flagged) >= floor - 1e-12
    assert recall_score(y, flagged) == pytest.approx(choice.recall)
    for t in np.unique(scores):  # no other threshold meeting the floor finds more positives
        other = scores >= t
        true_positives = (other & (y == 1)).sum()
        if true_positives / other.sum() >= floor:
            assert true_positives / y.sum() <= choice.recall + 1e-12
