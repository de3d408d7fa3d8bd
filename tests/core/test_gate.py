"""The promotion gate: its rules, and promotion and rollback against a real SQLite registry."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from clinrisk import promotion, registry
from clinrisk.cli import main
from clinrisk.errors import RegistryError
from clinrisk.retraining import load_and_validate, retrain
from clinrisk.train import train_model
from support import RAW_STROKE


def register_challenger(settings, threshold_shift: float = 0.0):
    """Train and register a challenger; a positive shift raises its threshold (fewer strokes found)."""
    spec, frame, sha = load_and_validate(settings, "stroke", None)
    result = train_model(spec, frame, data_sha256=sha)
    result.model.threshold += threshold_shift
    return registry.log_and_register(settings, result), result


def test_first_model_is_promoted_and_a_worse_challenger_is_not(fast_settings):
    """A challenger that finds fewer strokes on the same rows stays a challenger, with reasons tagged."""
    first = retrain(fast_settings, "stroke")
    assert first["promoted"] and "there is no champion yet" in first["reasons"]
    # The champion the gate compares with must not have trained on the evaluation rows (the store
    # refits the served model on every row): one trained on the challenger's own split is put there.
    good, _ = register_challenger(fast_settings)
    promotion.promote(fast_settings, "stroke", good.version, reason="trained without the holdout")
    version, result = register_challenger(fast_settings, threshold_shift=0.15)
    champion = promotion.current_champion(fast_settings, "stroke")
    decision = promotion.apply_gate(fast_settings, version.version, result.model, result.holdout, champion)
    assert not decision.promote, decision.reasons
    assert decision.p_value is not None and decision.p_value < 0.05
    assert decision.champion_version == good.version
    assert registry.alias_version(fast_settings, "stroke", "champion") == good.version
    assert registry.alias_version(fast_settings, "stroke", "challenger") == version.version
    tags = registry.version_tags(fast_settings, "stroke", version.version)
    assert tags["gate.decision"] == "rejected"
    assert "significantly fewer positives" in tags["gate.reasons"]
    for key in ("challenger.precision", "challenger.recall", "champion.precision", "champion.recall"):
        assert "[" in tags[f"gate.{key}"]
    assert float(tags["gate.p_value"]) == pytest.approx(decision.p_value, rel=1e-3)
    assert int(tags["gate.evaluation_positives"]) == int(result.holdout["stroke"].sum())


def test_a_challenger_under_the_floor_is_refused_against_a_champion(fast_settings):
    """A challenger flagging almost everyone is refused, with both models' intervals tagged."""
    first = retrain(fast_settings, "stroke")
    version, result = register_challenger(fast_settings, threshold_shift=-0.5)
    champion = promotion.current_champion(fast_settings, "stroke")
    decision = promotion.apply_gate(fast_settings, version.version, result.model, result.holdout, champion)
    assert not decision.promote and "significantly below the floor: not promoted" in decision.reasons[-1]
    assert decision.champion["recall"] > 0 and "pr_auc" in decision.champion
    tags = registry.version_tags(fast_settings, "stroke", version.version)
    assert "[" in tags["gate.champion.precision"] and tags["gate.compared_with"] == first["version"]
    assert registry.alias_version(fast_settings, "stroke", "champion") == first["version"]


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


def tiny_file(tmp_path, rows: int = 60, strokes: int = 5):
    """A valid file of `rows` real patients, `strokes` of them old with a stroke: easy to score perfectly."""
    frame = pd.read_csv(RAW_STROKE)
    sample = pd.concat(
        [
            frame[(frame["stroke"] == 1) & (frame["age"] > 70)].sample(strokes, random_state=3),
            frame[(frame["stroke"] == 0) & (frame["age"] < 40)].sample(rows - strokes, random_state=3),
        ]
    )
    path = tmp_path / "tiny.csv"
    sample.to_csv(path, index=False)
    return path


def test_a_tiny_file_does_not_replace_the_champion(fast_settings, tmp_path):
    """Training on 60 rows with 5 strokes leaves the champion in place and the reasons say why."""
    first = retrain(fast_settings, "stroke")
    tiny = retrain(fast_settings, "stroke", data_path=tiny_file(tmp_path))
    assert not tiny["promoted"]
    assert "fewer than the 30 needed" in tiny["reasons"][-1]
    assert registry.alias_version(fast_settings, "stroke", "champion") == first["version"]
    tags = registry.version_tags(fast_settings, "stroke", tiny["version"])
    assert tags["gate.decision"] == "rejected" and tags["gate.p_value"] == "none"
    listed = registry.list_versions(fast_settings, "stroke")[-1]
    assert listed["gate_reasons"] == tiny["reasons"] and listed["gate_compared_with"] == first["version"]
    env = {"CLINRISK_HOME": str(fast_settings.home), "CLINRISK_SPEC_DIR": str(fast_settings.spec_dir)}
    shown = CliRunner().invoke(main, ["models", "--model", "stroke"], env=env)
    assert f"McNemar p not run (see the reasons; compared with version {first['version']})" in shown.output
    assert f"- {tiny['reasons'][-1]}" in shown.output, shown.output


def test_replacing_a_hand_promoted_champion_says_so(fast_settings, tmp_path):
    """When the gate replaces a champion promoted by hand, the reasons name it and its reason."""
    first = retrain(fast_settings, "stroke")
    second = retrain(fast_settings, "stroke", data_path=RAW_STROKE)
    promotion.promote(fast_settings, "stroke", first["version"], reason="clinician's choice")
    newer = tmp_path / "newer.csv"  # different rows, so no store skips it as already seen
    pd.read_csv(RAW_STROKE).iloc[:-10].to_csv(newer, index=False)
    third = retrain(fast_settings, "stroke", data_path=newer)
    assert second["promoted"] and third["promoted"]
    assert f"champion v{first['version']} was promoted by hand (clinician's choice)" in third["reasons"][-1]
    assert registry.version_tags(fast_settings, "stroke", third["version"])["champion.promoted_how"] == "gate"
