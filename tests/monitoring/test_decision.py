"""The retrain decision and the cooldown, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clinrisk.monitoring.decision import cooldown_block, recommend_retrain

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def test_drift_at_the_limit_recommends_a_retrain_naming_the_columns():
    """It recommends a retrain when the drifted share reaches the limit, naming each drifted column."""
    decision = recommend_retrain(0.2, {"age": 0.64, "avg_glucose_level": 0.73}, 0.2)
    assert decision.recommended
    assert "avg_glucose_level (0.73), age (0.64)" in decision.causes[0]


def test_drift_below_the_limit_recommends_nothing():
    """It recommends nothing when fewer features drifted than the limit and quality holds."""
    decision = recommend_retrain(
        0.1, {"age": 0.3}, 0.2, recall=0.7, precision=0.2, recall_floor=0.5, precision_floor=0.15
    )
    assert not decision.recommended and decision.causes == []


@pytest.mark.parametrize(
    ("recall", "precision", "cause"),
    [
        (0.4, 0.2, "recall 0.400 is below the floor 0.5"),
        (0.7, 0.1, "precision 0.100 is below the floor 0.15"),
    ],
)
def test_a_quality_breach_recommends_a_retrain(recall, precision, cause):
    """It recommends a retrain when recall or precision falls below its floor, even without drift."""
    decision = recommend_retrain(0.0, {}, 0.2, recall, precision, recall_floor=0.5, precision_floor=0.15)
    assert decision.recommended and decision.causes == [cause]


def test_unknown_quality_is_not_a_breach():
    """It does not treat missing outcomes (no recall, no precision) as a breach."""
    assert not recommend_retrain(0.0, {}, 0.2, None, None, recall_floor=0.5, precision_floor=0.15).recommended


@pytest.mark.parametrize(
    ("last", "blocked"),
    [
        (None, False),
        (NOW - timedelta(hours=1), True),
        (NOW - timedelta(hours=23, minutes=59), True),
        (NOW - timedelta(hours=24), False),
        (NOW - timedelta(days=3), False),
    ],
)
def test_cooldown_blocks_only_within_its_hours(last, blocked):
    """It blocks a retrain only while the last one is younger than the cooldown."""
    reason = cooldown_block(last, NOW, 24)
    assert (reason is not None) == blocked
    if blocked:
        assert "cooldown" in reason and "24 h" in reason
