"""Training a regression: holdout split, candidates compared by out-of-fold R², refit, holdout R².

The classification path lives in `clinrisk.train`; `train.train_model` hands a spec whose
`objective.kind` is `regression` to `train_regression` here. There is no threshold: the model
predicts the outcome in the target's units, and the gate (`clinrisk.gate_regression`) judges
its holdout R² against the spec's floor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict, train_test_split

from clinrisk.evaluate import regression_metrics
from clinrisk.features import build_pipeline
from clinrisk.model import RiskModel
from clinrisk.spec import CandidateSpec, ModelSpec

log = logging.getLogger(__name__)


@dataclass
class RegressionCandidateScore:
    """How one candidate did on out-of-fold predictions of the training part."""

    name: str
    r2: float
    rmse: float
    failure: str | None = None


def out_of_fold_r2(
    spec: ModelSpec, candidate: CandidateSpec, train: pd.DataFrame, seed: int
) -> RegressionCandidateScore:
    """R² and RMSE of out-of-fold predictions (K-fold, shuffled, seeded)."""
    folds = KFold(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed)
    y = train[spec.target.column].to_numpy(dtype=float)
    predicted = cross_val_predict(
        build_pipeline(spec, candidate, seed), train[spec.feature_names], y, cv=folds
    )
    if not np.all(np.isfinite(predicted)):
        return RegressionCandidateScore(candidate.name, float("-inf"), float("inf"), "non-finite predictions")
    return RegressionCandidateScore(
        candidate.name, float(r2_score(y, predicted)), float(np.sqrt(mean_squared_error(y, predicted)))
    )


def select_best_regressor(scores: list[RegressionCandidateScore]) -> RegressionCandidateScore:
    """The highest out-of-fold R²; whether it is good enough is the gate's question."""
    return max(scores, key=lambda s: s.r2)


def train_regression(
    spec: ModelSpec,
    frame: pd.DataFrame,
    seed: int,
    data_sha256: str = "",
    evaluation: pd.DataFrame | None = None,
    warnings: list[str] | None = None,
):
    """Train every candidate, keep the best by out-of-fold R², refit it and evaluate it on the holdout.

    The holdout is a random split of `frame`, or `evaluation` when given (rows kept apart by the
    caller, e.g. those the champion never saw; `frame` is then all training rows).
    """
    from clinrisk.train import TrainingResult, reference_sample, training_facts

    if evaluation is None:
        train, holdout = train_test_split(frame, test_size=spec.training.holdout_fraction, random_state=seed)
    else:
        train, holdout = frame, evaluation
    scores = [out_of_fold_r2(spec, c, train, seed) for c in spec.candidates]
    best = select_best_regressor(scores)
    log.info("best candidate %s: out-of-fold R² %.3f", best.name, best.r2)
    pipeline = build_pipeline(spec, spec.candidate(best.name), seed)
    pipeline.fit(train[spec.feature_names], train[spec.target.column].to_numpy(dtype=float))
    model = RiskModel(pipeline=pipeline, threshold=None, spec_yaml=spec.to_yaml())
    predicted = model.predict_value(holdout)
    metrics = regression_metrics(holdout[spec.target.column], predicted, spec.objective.bootstrap_rounds)
    model.info = {
        **training_facts(spec, best.name, seed, data_sha256, metrics),
        "data_warnings": warnings or [],
    }
    return TrainingResult(
        model=model,
        best=best,
        candidates=scores,
        holdout=holdout,
        holdout_proba=predicted,
        holdout_metrics=metrics,
        reference_sample=reference_sample(train, spec, seed),
        rows={"total": len(train) + len(holdout), "train": len(train), "holdout": len(holdout)},
        data_warnings=warnings or [],
    )
