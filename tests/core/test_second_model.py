"""A second clinical model needs a spec file and no code: Pima diabetes on the same machinery."""

from __future__ import annotations

import pandas as pd

from clinrisk import registry
from clinrisk.predict import score_file
from clinrisk.retraining import retrain
from support import REPO


def test_diabetes_trains_registers_and_scores_from_its_spec_alone(settings, tmp_path):
    """The diabetes spec trains, passes the gate under its own floor and scores its raw file."""
    summary = retrain(settings, "diabetes")
    assert summary["model"] == "diabetes" and summary["promoted"], summary
    assert summary["metrics"]["precision"] >= 0.5 - 0.05
    assert summary["metrics"]["roc_auc"] >= 0.75
    model = registry.load_alias(settings, "diabetes")
    report = score_file(model, model.info["version"], REPO / "data/raw/diabetes.csv", tmp_path / "scored.csv")
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert report.rows_scored == len(scored) == 768
    assert scored.loc[scored["glucose"].isna(), "probability"].notna().all()  # zeros read as missing
