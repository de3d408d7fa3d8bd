"""Calibration: the probability is a risk, and the decisions are the same as before calibration."""

from __future__ import annotations

import numpy as np
import pytest

from clinrisk.calibration import PlattCalibration, fit_platt, logit
from clinrisk.data import validate_frame
from clinrisk.errors import NoThresholdError
from clinrisk.train import train_model


@pytest.fixture(scope="module")
def trained(stroke_spec, raw_stroke):
    clean = validate_frame(raw_stroke, stroke_spec, require_target=True)
    return train_model(stroke_spec, clean), clean


def test_mean_risk_matches_the_observed_rate(trained, stroke_spec):
    """Over all patients the mean calibrated risk is within 1 point of the observed stroke rate."""
    result, clean = trained
    observed = clean[stroke_spec.target.column].mean()
    assert result.model.predict_proba(clean).mean() == pytest.approx(observed, abs=0.01)
    assert result.model.raw_proba(clean).mean() > 3 * observed


def test_calibration_improves_the_holdout_brier(trained):
    """Holdout Brier score falls below the uncalibrated one and below always predicting the base rate."""
    calibration = trained[0].model.info["calibration"]
    rate = calibration["observed_rate"]
    assert calibration["brier"] < calibration["brier_uncalibrated"]
    assert calibration["brier"] < rate * (1 - rate)
    assert sum(calibration["curve"]["count"]) == trained[0].rows["holdout"]


def test_every_decision_is_unchanged(trained):
    """Flagged on the calibrated scale exactly when the raw score reaches the raw threshold."""
    result, clean = trained
    raw_threshold = result.model.info["calibration"]["raw_threshold"]
    calibrated = result.model.decide(result.model.predict_proba(clean))
    assert (calibrated == (result.model.raw_proba(clean) >= raw_threshold)).all()
    assert result.model.threshold < raw_threshold


@pytest.mark.parametrize("raw", [0.0, 1e-300, 0.3, 0.999999, 1.0])
def test_the_map_stays_finite_at_the_edges(raw):
    """Scores of exactly 0 or 1 give finite risks strictly inside (0, 1)."""
    risk = PlattCalibration(a=1.0, b=-3.0).apply(np.array([raw]))[0]
    assert 0 < risk < 1


def test_a_map_that_reverses_the_ranking_is_refused():
    """Scores that rank the outcome backwards give a clear error, not an inverted risk."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    backwards = np.where(y == 1, 0.2, 0.8) + rng.normal(0, 0.05, 500).clip(-0.1, 0.1)
    with pytest.raises(NoThresholdError, match="slope"):
        fit_platt(y, backwards)


def test_the_map_is_affine_on_log_odds():
    """Calibrated log-odds are a * raw log-odds + b, which keeps additive explanations exact."""
    calibration = PlattCalibration(a=0.9, b=-2.5)
    raw = np.array([0.1, 0.5, 0.9])
    assert logit(calibration.apply(raw)) == pytest.approx(0.9 * logit(raw) - 2.5)
