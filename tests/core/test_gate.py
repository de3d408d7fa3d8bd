"""The promotion gate: its rules, and promotion and rollback against a real SQLite registry."""

from __future__ import annotations

import pytest

from clinrisk import promotion, registry
from clinrisk.errors import RegistryError
from clinrisk.retraining import load_and_validate, retrain
from clinrisk.train import train_model
from support import RAW_STROKE

GOOD = {"precision": 0.18, "recall": 0.74, "pr_auc": 0.22}


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        ({**GOOD, "precision": 0.12}, None, False, "below the floor"),
        (GOOD, None, True, "no champion yet"),
        ({**GOOD, "recall": 0.80}, GOOD, True, "higher recall"),
        ({**GOOD, "recall": 0.70}, GOOD, False, "lower recall"),
        ({**GOOD, "pr_auc": 0.25}, GOOD, True, "not lower PR-AUC"),
        ({**GOOD, "pr_auc": 0.20}, GOOD, False, "lower PR-AUC"),
        ({**GOOD, "recall": 0.50}, {**GOOD, "precision": 0.10}, True, "champion precision 0.100 breaches"),
    ],
)
def test_gate_rules(challenger, champion, promote, reason):
    """It promotes on the floor first, then recall, then PR-AUC, and says why."""
    decision = promotion.decide(challenger, champion, floor=0.15)
    assert decision.promote is promote
    assert any(reason in r for r in decision.reasons)


def register_challenger(settings, threshold_shift: float = 0.0):
    """Train and register a challenger; a positive shift raises its threshold (fewer strokes found)."""
    spec, frame, sha = load_and_validate(settings, "stroke", None)
    result = train_model(spec, frame, data_sha256=sha)
    result.model.threshold += threshold_shift
    return registry.log_and_register(settings, result), result


def test_first_model_is_promoted_and_a_worse_challenger_is_not(fast_settings):
    """A challenger that finds fewer strokes on the same rows stays a challenger, with reasons tagged."""
    first = retrain(fast_settings, "stroke")
    assert first["promoted"] and first["reasons"][-1] == "there is no champion yet"
    version, result = register_challenger(fast_settings, threshold_shift=0.15)
    champion = registry.load_alias(fast_settings, "stroke")
    decision = promotion.apply_gate(fast_settings, version.version, result.model, result.holdout, champion)
    assert not decision.promote
    assert decision.champion_version == first["version"]
    assert registry.alias_version(fast_settings, "stroke", "champion") == first["version"]
    assert registry.alias_version(fast_settings, "stroke", "challenger") == version.version
    tags = registry.version_tags(fast_settings, "stroke", version.version)
    assert tags["gate.decision"] == "rejected"
    assert "recall" in tags["gate.reasons"] or "floor" in tags["gate.reasons"]


def test_rollback_restores_the_previous_champion(fast_settings):
    """After a promotion, rollback points champion back at the version before and records why."""
    first = retrain(fast_settings, "stroke")
    # The same rows as one file (the store would skip them): at least as good, so promoted.
    second = retrain(fast_settings, "stroke", data_path=RAW_STROKE)
    assert second["promoted"]
    assert registry.alias_version(fast_settings, "stroke", "champion") == second["version"]
    old, new = promotion.rollback(fast_settings, "stroke", reason="test")
    assert (old, new) == (second["version"], first["version"])
    assert registry.alias_version(fast_settings, "stroke", "champion") == first["version"]
    assert (
        registry.version_tags(fast_settings, "stroke", second["version"])["champion.rollback_reason"]
        == "test"
    )
    with pytest.raises(RegistryError, match="nothing to roll back"):
        promotion.rollback(fast_settings, "stroke")
