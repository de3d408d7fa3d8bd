"""The regression gate: R² on unseen rows against the floor, then against the champion."""

from __future__ import annotations

import pytest
import yaml

from clinrisk import registry
from clinrisk.gate_regression import decide_regression
from clinrisk.retraining import retrain
from clinrisk.settings import load_settings
from support import REPO

GOOD = {"r2": 0.46, "r2_low": 0.30, "r2_high": 0.58}
# Trained with `--data` (one file), so a second retrain trains again: from the labelled store it
# would be skipped, the snapshot being the one the champion was trained on.
DATA = REPO / "data" / "raw" / "diabetes-progression.csv"


@pytest.mark.parametrize(
    ("challenger", "champion", "difference", "promote", "reason"),
    [
        ({**GOOD, "r2": 0.39}, None, None, False, "below the floor 0.4"),
        ({**GOOD, "r2": -0.2}, GOOD, (-0.7, -0.5), False, "below the floor 0.4"),
        (GOOD, None, None, True, "no champion yet"),
        (GOOD, {**GOOD, "r2": 0.35}, (0.0, 0.2), True, "champion R² 0.350"),
        (GOOD, GOOD, (0.01, 0.05), True, "better than the champion"),
        (GOOD, GOOD, (-0.05, -0.01), False, "worse than the champion"),
        (GOOD, GOOD, (-0.03, 0.04), False, "champion kept"),
        (GOOD, GOOD, (0.0, 0.0), False, "champion kept"),
    ],
)
def test_regression_gate_rules(challenger, champion, difference, promote, reason):
    """It refuses R² under the floor, then promotes only a credibly better challenger, and says why."""
    decision = decide_regression(challenger, champion, 0.4, difference)
    assert decision.promote is promote
    assert any(reason in r for r in decision.reasons), decision.reasons


def write_progression_spec(directory, features=None):
    """The real diabetes_progression spec in `directory`, optionally with fewer features."""
    raw = yaml.safe_load((REPO / "models" / "diabetes_progression.yaml").read_text())
    raw["data"]["path"] = str(REPO / raw["data"]["path"])
    if features:
        raw["features"] = {name: raw["features"][name] for name in features}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "diabetes_progression.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return directory


@pytest.mark.slow
def test_a_model_under_r2_floor_is_refused_and_the_champion_stays(tmp_path):
    """A sex-only model (R² near 0 on unseen rows) is registered but refused; the champion is untouched."""
    specs = write_progression_spec(tmp_path / "specs")
    settings = load_settings(home=tmp_path / "home", spec_dir=specs)
    first = retrain(settings, "diabetes_progression", DATA)
    assert first["promoted"] and first["metrics"]["r2"] >= 0.4, first
    write_progression_spec(specs, features=["sex"])
    weak = retrain(settings, "diabetes_progression", DATA)
    assert not weak["promoted"] and weak["metrics"]["r2"] < 0.4
    assert "below the floor 0.4" in weak["reasons"][0]
    assert registry.alias_version(settings, "diabetes_progression", "champion") == first["version"]
    tags = registry.version_tags(settings, "diabetes_progression", weak["version"])
    assert tags["gate.decision"] == "rejected"


@pytest.mark.slow
def test_an_identical_retrain_keeps_the_champion(tmp_path):
    """The same data and seed give ΔR² = 0 on the same rows: no credible gain, the champion is kept."""
    settings = load_settings(home=tmp_path / "home", spec_dir=write_progression_spec(tmp_path / "specs"))
    first = retrain(settings, "diabetes_progression", DATA)
    second = retrain(settings, "diabetes_progression", DATA)
    assert not second["promoted"] and "champion kept" in second["reasons"][-1]
    assert second["compared_with"] == first["version"]
