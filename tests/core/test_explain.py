"""Reasons for a prediction add up, with the base value, to the model's own output on real patients."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from clinrisk.calibration import PlattCalibration
from clinrisk.data import validate_frame
from clinrisk.errors import ExplanationUnavailable
from clinrisk.explain import LOG_ODDS, PROBABILITY, explain, model_output
from clinrisk.features import build_preprocessor
from clinrisk.model import RiskModel
from clinrisk.train import train_model


@pytest.fixture(scope="module")
def clean(stroke_spec, raw_stroke):
    return validate_frame(raw_stroke, stroke_spec, require_target=True)


@pytest.fixture(scope="module", params=["logistic_regression", "hist_gradient_boosting"])
def trained(request, stroke_spec, clean):
    """Each candidate alone, trained and calibrated as `clinrisk train` does."""
    chosen = [c for c in stroke_spec.candidates if c.name == request.param]
    return train_model(stroke_spec.model_copy(update={"candidates": chosen}), clean).model


@pytest.fixture(scope="module")
def soft_vote(stroke_spec, clean):
    """A soft-voting ensemble of both candidates with a Platt map, as a gate candidate could be."""
    ensemble = VotingClassifier(
        [
            ("lr", LogisticRegression(C=0.01, max_iter=2000, class_weight="balanced")),
            ("hgb", HistGradientBoostingClassifier(max_depth=2, max_iter=50, class_weight="balanced")),
        ],
        voting="soft",
    )
    pipeline = Pipeline([("preprocess", build_preprocessor(stroke_spec)), ("classifier", ensemble)])
    pipeline.fit(clean[stroke_spec.feature_names], clean[stroke_spec.target.column])
    return RiskModel(pipeline, 0.1, stroke_spec.to_yaml(), calibration=PlattCalibration(1.1, -2.9))


def _sums(explanations) -> np.ndarray:
    return np.array([e.base_value + sum(r["contribution"] for r in e.reasons) for e in explanations])


def test_single_models_add_up_to_the_calibrated_log_odds(trained, clean):
    """For 300 real patients, base + contributions equals the calibrated log-odds of the probability."""
    patients = clean.sample(300, random_state=1)
    explanations = explain(trained, patients)
    assert {e.scale for e in explanations} == {LOG_ODDS}
    assert _sums(explanations) == pytest.approx(model_output(trained, LOG_ODDS, patients), abs=1e-9)
    assert [e.output for e in explanations] == pytest.approx(list(_sums(explanations)), abs=1e-12)


def test_a_soft_vote_adds_up_to_the_calibrated_probability(soft_vote, clean):
    """An ensemble's reasons are in probability space and add up to the probability served."""
    patients = clean.sample(300, random_state=2)
    explanations = explain(soft_vote, patients)
    assert {e.scale for e in explanations} == {PROBABILITY}
    assert _sums(explanations) == pytest.approx(soft_vote.predict_proba(patients), abs=1e-9)


def test_reasons_cover_every_feature_largest_first(trained, clean, stroke_spec):
    """Each input feature appears once, ordered by the size of its contribution."""
    reasons = explain(trained, clean.head(1))[0].reasons
    assert sorted(r["feature"] for r in reasons) == sorted(stroke_spec.feature_names)
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    assert reasons[0]["feature"] == "age"  # the first patient is 67: age dominates


def test_age_pushes_an_old_patients_risk_up_and_a_childs_down(trained, clean):
    """Direction: age's contribution is positive at 80 and negative at 5."""
    patient = clean.head(1)
    old, child = explain(trained, patient.assign(age=80.0))[0], explain(trained, patient.assign(age=5.0))[0]
    age = {
        e: next(r["contribution"] for r in x.reasons if r["feature"] == "age")
        for e, x in (("old", old), ("child", child))
    }
    assert age["old"] > 0 > age["child"]


def test_missing_values_are_reported_as_none(trained, clean):
    """A missing bmi is explained (imputed inside the model) and shown as None."""
    patient = clean.head(1).assign(bmi=np.nan)
    reasons = explain(trained, patient)[0].reasons
    assert next(r["value"] for r in reasons if r["feature"] == "bmi") is None


def test_an_estimator_without_an_exact_method_is_refused(stroke_spec, clean):
    """A model we cannot explain exactly says so instead of guessing."""
    from sklearn.neighbors import KNeighborsClassifier

    pipeline = Pipeline(
        [("preprocess", build_preprocessor(stroke_spec)), ("classifier", KNeighborsClassifier())]
    )
    pipeline.fit(clean[stroke_spec.feature_names].head(200), clean[stroke_spec.target.column].head(200))
    with pytest.raises(ExplanationUnavailable, match="KNeighborsClassifier"):
        explain(RiskModel(pipeline, 0.5, stroke_spec.to_yaml()), clean.head(1))
