"""Samples of the real stroke data for monitoring tests, and a store with a fast-trained champion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from clinrisk.retraining import retrain
from clinrisk.settings import Settings, load_settings
from support import RAW_STROKE, REPO

SAMPLE_ROWS = 1000


def undrifted(raw: pd.DataFrame, seed: int = 7, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """Real rows as they are, without outcomes (they arrive months later in practice)."""
    return raw.sample(rows, random_state=seed).drop(columns=["stroke"]).reset_index(drop=True)


def drifted(raw: pd.DataFrame, seed: int = 7, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """Real rows, with outcomes, from an older and more diabetic population: age +15, glucose x1.3."""
    sample = raw.sample(rows, random_state=seed).reset_index(drop=True)
    sample["age"] = (sample["age"] + 15).clip(upper=120)
    sample["avg_glucose_level"] = (sample["avg_glucose_level"] * 1.3).clip(upper=500)
    return sample


def fast_spec_dir(directory: Path) -> Path:
    """The stroke spec with logistic regression only and 3 folds (as the suite's fast spec)."""
    raw = yaml.safe_load((REPO / "models" / "stroke.yaml").read_text())
    raw["data"]["path"] = str(RAW_STROKE)
    raw["candidates"] = [c for c in raw["candidates"] if c["name"] == "logistic_regression"]
    raw["training"]["cv_folds"] = 3
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stroke.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return directory


def trained_store(root: Path) -> Settings:
    """A state directory of its own holding a promoted stroke champion (fast spec).

    The tracking URI is given explicitly: `mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI,
    so a session fixture built after another test's MLflow calls would otherwise inherit its store.
    """
    home = root / "home"
    settings = load_settings(
        home=home, spec_dir=fast_spec_dir(root / "specs"), tracking_uri=f"sqlite:///{home / 'mlflow.db'}"
    )
    assert retrain(settings, "stroke")["promoted"]
    return settings


def store_env(monkeypatch, store: Settings, tmp_path: Path) -> Settings:
    """Point CLINRISK_* at `store` (models) and at `tmp_path` (reports, workspace, prediction log)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("CLINRISK_HOME", str(store.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(store.spec_dir))
    monkeypatch.setenv("CLINRISK_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CLINRISK_EVIDENTLY_WORKSPACE", str(tmp_path / "evidently"))
    monkeypatch.setenv("CLINRISK_PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'predictions.db'}")
    return load_settings()
