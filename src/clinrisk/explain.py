"""Reasons for one prediction: per-feature contributions that add up to the model's output.

- Logistic regression: exact. Each transformed column contributes coef * (value - training
  mean), so `base = intercept + coef · mean` is the score of the average training patient
  (the same as SHAP's LinearExplainer with independent features).
- Gradient-boosted trees: SHAP's TreeExplainer (Lundberg et al. 2020, path-dependent), exact
  for the raw log-odds; its base value is the mean log-odds over the training data.
- One-hot columns are summed back to their input feature.
- Platt calibration is affine on log-odds (`a * z + b`), so contributions scale by `a` and the
  base becomes `a * base + b`: the explanation stays exact on the calibrated log-odds.
- A soft-voting ensemble averages probabilities, which no per-member log-odds add up to.
  Each member's log-odds contributions are rescaled to its own probability change
  (p_member - sigmoid(base_member)), averaged with the vote weights, then rescaled again
  through the calibration: additive and exact in *probability*, but a rescaling rule
  (DeepLIFT's), not Shapley values. `scale` says which space an explanation is in.

SHAP is imported only when a tree model is explained, and nothing is computed unless asked.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from clinrisk.calibration import logit, sigmoid
from clinrisk.errors import ExplanationUnavailable
from clinrisk.model import RiskModel

LOG_ODDS, PROBABILITY = "log-odds", "probability"
_TREE_EXPLAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Explanation:
    """`base_value + sum(contributions) == output` on `scale` (log-odds or probability)."""

    scale: str
    base_value: float
    output: float
    reasons: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "base_value": self.base_value,
            "output": self.output,
            "reasons": self.reasons,
        }


def column_groups(preprocess, feature_names: list[str]) -> np.ndarray:
    """For each transformed column, the index of the input feature it came from."""
    outputs = list(preprocess.get_feature_names_out())
    by_length = sorted(range(len(feature_names)), key=lambda i: -len(feature_names[i]))
    groups = []
    for column in outputs:
        owner = next(
            (i for i in by_length if column == feature_names[i] or column.startswith(f"{feature_names[i]}_")),
            None,
        )
        if owner is None:
            raise ExplanationUnavailable(f"cannot tell which input feature column '{column}' comes from")
        groups.append(owner)
    return np.array(groups)


def transformed_means(pipeline: Pipeline, train: pd.DataFrame, feature_names: list[str]) -> list[float]:
    """Mean of every transformed training column: the 'average patient' linear reasons start from."""
    return np.asarray(pipeline[:-1].transform(train[feature_names]), dtype=np.float64).mean(axis=0).tolist()


def _linear(estimator, X: np.ndarray, means: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    coef = np.asarray(estimator.coef_[0], dtype=np.float64)
    center = np.zeros_like(coef) if means is None else means
    base = float(estimator.intercept_[0]) + float(coef @ center)
    return coef * (X - center), np.full(len(X), base)


def _tree(estimator, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    explainer = _TREE_EXPLAINERS.get(estimator)
    if explainer is None:
        import shap

        explainer = _TREE_EXPLAINERS[estimator] = shap.TreeExplainer(estimator)
    values = np.asarray(explainer.shap_values(X), dtype=np.float64)
    return values, np.full(len(X), float(np.ravel(explainer.expected_value)[0]))


def member_log_odds(estimator, X: np.ndarray, means: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column contributions (rows * columns) and base values (rows) on the raw log-odds."""
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(estimator, LogisticRegression):
        return _linear(estimator, X, means)
    if isinstance(estimator, HistGradientBoostingClassifier | GradientBoostingClassifier):
        return _tree(estimator, X)
    raise ExplanationUnavailable(f"no exact explanation for {type(estimator).__name__}")


def _rescale(contributions: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Contributions scaled per row so they sum to `change` (zero where they sum to zero)."""
    total = contributions.sum(axis=1)
    safe = np.where(np.abs(total) > 1e-12, total, 1.0)
    factor = np.where(np.abs(total) > 1e-12, change / safe, 0.0)
    return contributions * factor[:, None]


def _soft_vote(ensemble, X: np.ndarray, means: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Probability-space contributions and base of a soft-voting ensemble."""
    weights = np.ones(len(ensemble.estimators_)) if ensemble.weights is None else np.asarray(ensemble.weights)
    weights = weights / weights.sum()
    total, base = np.zeros(X.shape, dtype=np.float64), np.zeros(len(X))
    for weight, member in zip(weights, ensemble.estimators_, strict=True):
        phi, member_base = member_log_odds(member, X, means)
        start = sigmoid(member_base)
        total += weight * _rescale(phi, sigmoid(member_base + phi.sum(axis=1)) - start)
        base += weight * start
    return total, base


def _raw_contributions(model: RiskModel, X: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    from sklearn.ensemble import VotingClassifier

    estimator = model.pipeline[-1]
    stored = model.info.get("transformed_means")
    means = None if stored is None else np.asarray(stored, dtype=np.float64)
    if isinstance(estimator, VotingClassifier):
        if estimator.voting != "soft":
            raise ExplanationUnavailable("a hard-voting ensemble has no probability to explain")
        return PROBABILITY, *_soft_vote(estimator, X, means)
    return LOG_ODDS, *member_log_odds(estimator, X, means)


def _calibrated(
    model: RiskModel, scale: str, phi: np.ndarray, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move contributions onto the calibrated scale; returns (contributions, base, output)."""
    calibration = model.calibration
    if scale == LOG_ODDS:
        if calibration is None:
            return phi, base, base + phi.sum(axis=1)
        return calibration.a * phi, calibration.log_odds(base), calibration.log_odds(base + phi.sum(axis=1))
    output = base + phi.sum(axis=1)
    if calibration is None:
        return phi, base, output
    new_base, new_output = model.calibrate(base), model.calibrate(output)
    return _rescale(phi, new_output - new_base), new_base, new_output


def explain(model: RiskModel, features: pd.DataFrame) -> list[Explanation]:
    """One Explanation per row of validated features; reasons ordered by |contribution|, largest first.

    Raises ExplanationUnavailable for an estimator with no exact method here.
    """
    spec = model.spec
    frame = features[spec.feature_names]
    X = np.asarray(model.pipeline[:-1].transform(frame), dtype=np.float64)
    scale, phi, base = _raw_contributions(model, X)
    phi, base, output = _calibrated(model, scale, phi, base)
    groups = column_groups(model.pipeline[:-1], spec.feature_names)
    per_feature = np.zeros((len(X), len(spec.feature_names)))
    np.add.at(per_feature.T, groups, phi.T)
    return [
        Explanation(
            scale,
            float(base[row]),
            float(output[row]),
            _reasons(spec.feature_names, frame.iloc[row], per_feature[row]),
        )
        for row in range(len(X))
    ]


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _reasons(names: list[str], values: pd.Series, contributions: np.ndarray) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(contributions), kind="stable")
    return [
        {"feature": names[i], "value": _plain(values.iloc[i]), "contribution": float(contributions[i])}
        for i in order
    ]


def model_output(model: RiskModel, scale: str, features: pd.DataFrame) -> np.ndarray:
    """The number an explanation adds up to: calibrated log-odds or calibrated probability."""
    proba = model.predict_proba(features)
    return logit(proba) if scale == LOG_ODDS else proba
