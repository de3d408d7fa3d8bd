"""The steps of one retraining, as plain functions that the CLI and the Prefect flow share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from clinrisk import registry
from clinrisk.data import load_training_data
from clinrisk.model import RiskModel
from clinrisk.promotion import GateDecision, apply_gate
from clinrisk.settings import PROJECT_ROOT, Settings
from clinrisk.spec import ModelSpec, file_sha256, load_spec
from clinrisk.train import TrainingResult, train_model


def data_path_for(spec: ModelSpec, data_path: Path | None) -> Path:
    """The file to train on: the one given, else the spec's own file (from cwd or the checkout)."""
    if data_path:
        return Path(data_path)
    local = Path(spec.data.path)
    return local if local.exists() else PROJECT_ROOT / spec.data.path


def load_and_validate(
    settings: Settings, model_name: str, data_path: Path | None
) -> tuple[ModelSpec, pd.DataFrame, str]:
    """Read the spec and the data; raise DataValidationError before anything is logged."""
    spec = load_spec(settings.spec_path_for(model_name))
    path = data_path_for(spec, data_path)
    # The spec's own raw file is immutable: its checksum is checked; a file given is recorded.
    frame = load_training_data(spec, path, expected_sha256=None if data_path else spec.data.sha256)
    return spec, frame, file_sha256(path)


def apply_gate_for(
    settings: Settings, version: str, challenger: RiskModel, holdout: pd.DataFrame
) -> GateDecision:
    """The gate of the model's kind: R² for a regression, recall at the precision floor otherwise."""
    if challenger.is_regression:
        from clinrisk.gate_regression import apply_regression_gate

        return apply_regression_gate(settings, version, challenger, holdout)
    return apply_gate(settings, version, challenger, holdout)


def summary(
    result: TrainingResult, version: registry.RegisteredVersion, decision: GateDecision
) -> dict[str, Any]:
    """The JSON line `clinrisk train` prints last."""
    if result.model.is_regression:
        return _regression_summary(result, version, decision)
    keys = ("recall", "precision", "roc_auc", "pr_auc", "f1", "flagged_share")
    return {
        "run_id": version.run_id,
        "model": version.name,
        "version": version.version,
        "candidate": result.best.name,
        "threshold": round(result.model.threshold, 6),
        "metrics": {k: round(result.holdout_metrics[k], 4) for k in keys},
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "compared_with": decision.champion_version,
    }


def _regression_summary(
    result: TrainingResult, version: registry.RegisteredVersion, decision: GateDecision
) -> dict[str, Any]:
    """The same JSON line for a regression: no threshold, R² (with its interval), RMSE and MAE."""
    return {
        "run_id": version.run_id,
        "model": version.name,
        "version": version.version,
        "candidate": result.best.name,
        "threshold": None,
        "metrics": {k: round(v, 4) for k, v in result.holdout_metrics.items()},
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "compared_with": decision.champion_version,
    }


def retrain(
    settings: Settings, model_name: str, data_path: Path | None = None, seed: int | None = None
) -> dict:
    """Validate, train, log, register and gate: the whole retraining in one call."""
    spec, frame, sha = load_and_validate(settings, model_name, data_path)
    result = train_model(spec, frame, seed=seed, data_sha256=sha)
    version = registry.log_and_register(settings, result, data_path_for(spec, data_path))
    decision = apply_gate_for(settings, version.version, result.model, result.holdout)
    return summary(result, version, decision)
