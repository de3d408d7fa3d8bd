"""Calibration: turn the class-weighted model's score into a risk that means a risk.

The candidates are trained with `class_weight="balanced"`, so their raw probability answers
"how likely in a 50/50 population", not "how likely for this patient". Platt scaling
(Platt 1999; scikit-learn's `CalibratedClassifierCV(method="sigmoid")`) fits
`p = sigmoid(a * logit(raw) + b)` on the out-of-fold predictions of the training part, so no
row that fits the map was seen by the model that scored it.

The map is two numbers kept with the model: any scorer (scikit-learn, ONNX) applies it after
the raw score. It is strictly increasing (a > 0 is checked), so the threshold moved through
the same map flags exactly the same patients.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clinrisk.errors import NoThresholdError

# Raw scores are clipped away from 0 and 1 so that their log-odds stay finite.
EPSILON = 1e-12
CURVE_BINS = 10


def logit(proba: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities in [0, 1] (clipped to [1e-12, 1 - 1e-12])."""
    p = np.clip(np.asarray(proba, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=np.float64)))


@dataclass(frozen=True)
class PlattCalibration:
    """`calibrated = sigmoid(a * logit(raw) + b)`: slope `a` > 0 and intercept `b` on log-odds."""

    a: float
    b: float
    method: str = "platt"

    def log_odds(self, raw_log_odds: np.ndarray) -> np.ndarray:
        """Calibrated log-odds from raw log-odds (an affine map, so additive explanations stay exact)."""
        return self.a * np.asarray(raw_log_odds, dtype=np.float64) + self.b

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from raw probabilities, same shape."""
        return sigmoid(self.log_odds(logit(raw)))

    def apply_one(self, raw: float) -> float:
        """`apply` for one probability, in Python floats (agrees to rounding, ~1e-16)."""
        p = min(max(raw, EPSILON), 1 - EPSILON)
        z = self.a * (math.log(p) - math.log1p(-p)) + self.b
        try:
            return 1.0 / (1.0 + math.exp(-z))
        except OverflowError:  # z below about -709: numpy's exp gives inf, so p = 0
            return 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_platt(y_true: np.ndarray, raw_oof: np.ndarray) -> PlattCalibration:
    """Fit Platt's map on out-of-fold raw probabilities; raises NoThresholdError if it is not increasing."""
    from sklearn.linear_model import LogisticRegression  # here: the service imports only `apply`

    features = logit(raw_oof).reshape(-1, 1)
    fitted = LogisticRegression(C=np.inf).fit(features, np.asarray(y_true).astype(int))
    a, b = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if not a > 0:
        # A map that decreases would reverse the ranking: the model itself is broken.
        raise NoThresholdError(f"calibration slope {a:.3g} is not positive: the scores do not rank risk")
    return PlattCalibration(a=a, b=b)


def curve(y_true: np.ndarray, proba: np.ndarray, bins: int = CURVE_BINS) -> dict[str, list[float]]:
    """Reliability curve on quantile bins: mean predicted risk, observed rate and count per bin."""
    from sklearn.calibration import calibration_curve

    y = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    observed, predicted = calibration_curve(y, proba, n_bins=bins, strategy="quantile")
    # The same bins as scikit-learn's calibration_curve, to report how many patients each holds.
    edges = np.percentile(proba, np.linspace(0, 1, bins + 1) * 100)
    counts = np.bincount(np.searchsorted(edges[1:-1], proba), minlength=len(edges))
    counts = counts[counts > 0]
    return {
        "predicted": [round(float(v), 6) for v in predicted],
        "observed": [round(float(v), 6) for v in observed],
        "count": [int(c) for c in counts],
    }


def summary(
    calibration: PlattCalibration, raw_threshold: float, y_holdout: np.ndarray, raw_holdout: np.ndarray
) -> dict[str, Any]:
    """What the card and the run record: the map, both thresholds, Brier before/after, the curve."""
    from sklearn.metrics import brier_score_loss

    calibrated = calibration.apply(raw_holdout)
    y = np.asarray(y_holdout).astype(int)
    return {
        **calibration.as_dict(),
        "raw_threshold": float(raw_threshold),
        "brier_uncalibrated": float(brier_score_loss(y, raw_holdout)),
        "brier": float(brier_score_loss(y, calibrated)),
        "mean_predicted": float(calibrated.mean()),
        "observed_rate": float(y.mean()),
        "curve": curve(y, calibrated),
    }


def calibrate_model(
    model, y_train: np.ndarray, raw_oof: np.ndarray, y_holdout, raw_holdout
) -> dict[str, Any]:
    """Fit the map on out-of-fold scores, set it on `model` with its threshold moved onto the
    calibrated scale (same decisions), and return the summary measured on the holdout."""
    calibration = fit_platt(y_train, raw_oof)
    raw_threshold = model.threshold
    model.calibration = calibration
    model.threshold = float(calibration.apply(np.array([raw_threshold]))[0])
    return summary(calibration, raw_threshold, np.asarray(y_holdout), np.asarray(raw_holdout))
