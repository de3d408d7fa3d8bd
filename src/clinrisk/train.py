"""Training: holdout split, candidates compared out of fold, threshold, refit, holdout evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

from clinrisk.calibration import calibrate_model
from clinrisk.data import data_warnings
from clinrisk.errors import NoThresholdError
from clinrisk.evaluate import classification_metrics
from clinrisk.explain import transformed_means
from clinrisk.features import build_pipeline
from clinrisk.model import RiskModel
from clinrisk.spec import CandidateSpec, ModelSpec
from clinrisk.threshold import ThresholdChoice, choose_threshold

log = logging.getLogger(__name__)


@dataclass
class CandidateScore:
    """How one candidate did on out-of-fold predictions of the training part."""

    name: str
    roc_auc: float
    pr_auc: float
    choice: ThresholdChoice | None
    failure: str | None = None
    # Out-of-fold raw probabilities of the training part, kept to fit the calibration.
    oof: np.ndarray | None = field(default=None, repr=False)


@dataclass
class TrainingResult:
    """A trained model and its evidence; for a regression `holdout_proba` holds predicted values."""

    model: RiskModel
    best: CandidateScore
    candidates: list[CandidateScore]
    holdout: pd.DataFrame
    holdout_proba: np.ndarray
    holdout_metrics: dict[str, float]
    reference_sample: pd.DataFrame
    rows: dict[str, int] = field(default_factory=dict)
    data_warnings: list[str] = field(default_factory=list)


def split_holdout(frame: pd.DataFrame, spec: ModelSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split; the holdout is only ever used to evaluate and gate, never to choose."""
    return train_test_split(
        frame,
        test_size=spec.training.holdout_fraction,
        stratify=frame[spec.target.column],
        random_state=seed,
    )


def out_of_fold_scores(
    spec: ModelSpec, candidate: CandidateSpec, train: pd.DataFrame, seed: int
) -> np.ndarray:
    """Out-of-fold probabilities, averaged over `cv_repeats` differently shuffled K-fold splits."""
    repeats = []
    for repeat in range(spec.training.cv_repeats):
        folds = StratifiedKFold(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed + repeat)
        pipeline = build_pipeline(spec, candidate, seed)
        proba = cross_val_predict(
            pipeline, train[spec.feature_names], train[spec.target.column], cv=folds, method="predict_proba"
        )
        repeats.append(proba[:, 1])
    return np.mean(repeats, axis=0)


def score_candidate(
    spec: ModelSpec, candidate: CandidateSpec, train: pd.DataFrame, seed: int
) -> CandidateScore:
    """Out-of-fold ranking metrics and the threshold this candidate would get."""
    y = train[spec.target.column].to_numpy()
    oof = out_of_fold_scores(spec, candidate, train, seed)
    objective = spec.objective
    try:
        choice = choose_threshold(y, oof, objective.precision_floor, objective.safety_margin)
        failure = None
    except NoThresholdError as exc:
        choice, failure = None, str(exc)
    return CandidateScore(
        name=candidate.name,
        roc_auc=float(roc_auc_score(y, oof)),
        pr_auc=float(average_precision_score(y, oof)),
        choice=choice,
        failure=failure,
        oof=oof,
    )


def select_best(scores: list[CandidateScore], tolerance: float = 0.0) -> CandidateScore:
    """Highest out-of-fold recall at the floor; within `tolerance` of it, the best PR-AUC wins.

    Out-of-fold recall at one operating point is noisy (a few hundred positives), so small
    differences decide nothing; PR-AUC summarises the whole curve and is far steadier.
    """
    feasible = [s for s in scores if s.choice is not None]
    if not feasible:
        reasons = "; ".join(f"{s.name}: {s.failure}" for s in scores)
        raise NoThresholdError(f"no candidate reaches the precision floor: {reasons}")
    best_recall = max(s.choice.recall for s in feasible)
    contenders = [s for s in feasible if s.choice.recall >= best_recall - tolerance - 1e-12]
    return max(contenders, key=lambda s: (s.pr_auc, s.choice.recall))


def reference_sample(train: pd.DataFrame, spec: ModelSpec, seed: int) -> pd.DataFrame:
    """Rows of the training data kept with the model as the drift reference."""
    rows = min(spec.training.reference_sample_rows, len(train))
    columns = [*spec.feature_names, spec.target.column]
    return train[columns].sample(n=rows, random_state=seed).reset_index(drop=True)


def training_facts(
    spec: ModelSpec, candidate: str, seed: int, data_sha256: str | None, metrics: dict
) -> dict:
    """What every trained model records about itself in `RiskModel.info` (both kinds)."""
    return {
        "model": spec.name,
        "candidate": candidate,
        "seed": seed,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_sha256": data_sha256,
        "holdout_metrics": metrics,
    }


# The OpenMP thread count is set by the caller from settings (clinrisk.threads.limited).
def train_model(
    spec: ModelSpec,
    frame: pd.DataFrame,
    seed: int | None = None,
    data_sha256: str = "",
    evaluation: pd.DataFrame | None = None,
) -> TrainingResult:
    """Train every candidate, keep the best, refit it and evaluate it on the holdout.

    The holdout is a stratified split of `frame`, or `evaluation` when given (rows kept apart by
    the caller, e.g. those the champion never saw; `frame` is then all training rows).
    """
    seed = spec.training.seed if seed is None else seed
    warnings = data_warnings(frame, spec)
    for warning in warnings:
        log.warning("%s", warning)
    if spec.is_regression:
        from clinrisk.train_regression import train_regression

        return train_regression(spec, frame, seed, data_sha256, evaluation, warnings)
    if evaluation is None:
        train, holdout = split_holdout(frame, spec, seed)
    else:
        train, holdout = frame, evaluation
    scores = [score_candidate(spec, c, train, seed) for c in spec.candidates]
    best = select_best(scores, spec.objective.selection_tolerance)
    log.info(
        "best candidate %s: oof recall %.3f at threshold %.4f on the uncalibrated score",
        best.name,
        best.choice.recall,
        best.choice.threshold,
    )
    pipeline = build_pipeline(spec, next(c for c in spec.candidates if c.name == best.name), seed)
    pipeline.fit(train[spec.feature_names], train[spec.target.column])
    model = RiskModel(pipeline=pipeline, threshold=best.choice.threshold, spec_yaml=spec.to_yaml())
    y_train = train[spec.target.column].to_numpy()
    calibration = calibrate_model(
        model, y_train, best.oof, holdout[spec.target.column], model.raw_proba(holdout)
    )
    holdout_proba = model.predict_proba(holdout)
    metrics = classification_metrics(holdout[spec.target.column], holdout_proba, model.threshold)
    model.info = {
        **training_facts(spec, best.name, seed, data_sha256, metrics),
        "calibration": calibration,
        # The average training patient, which linear explanations start from.
        "transformed_means": transformed_means(pipeline, train, spec.feature_names),
        "data_warnings": warnings,
    }
    return TrainingResult(
        model=model,
        best=best,
        candidates=scores,
        holdout=holdout,
        holdout_proba=holdout_proba,
        holdout_metrics=metrics,
        reference_sample=reference_sample(train, spec, seed),
        rows={
            "total": len(train) + len(holdout),
            "train": len(train),
            "holdout": len(holdout),
            "positives_train": int(train[spec.target.column].sum()),
        },
        data_warnings=warnings,
    )
