"""The lean scoring path: ONNX matches scikit-learn on the whole real file, or is not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from web_support import PATIENT

from clinrisk.serving import scorer
from clinrisk.serving.scorer import (
    SklearnScorer,
    build_scorer,
    columns_from_records,
    load_verification_data,
    score_frame,
)


@pytest.fixture(scope="module")
def real_rows(stroke_spec) -> pd.DataFrame:
    frame, where = load_verification_data(stroke_spec)
    assert frame is not None, where
    return frame


@pytest.mark.parametrize("model_fixture", ["logistic_model", "boosting_model"])
def test_onnx_matches_scikit_learn_on_every_real_row(request, model_fixture, real_rows):
    """It converts both candidate families and agrees with scikit-learn within 1e-5 on all 5,110 rows."""
    model = request.getfixturevalue(model_fixture)
    lean, path = build_scorer(model, fast_path=True, verification=real_rows)
    assert path.active == "onnx", path.reason
    assert path.verified_rows == len(real_rows) == 5110
    difference = np.abs(score_frame(lean, real_rows, model.spec) - model.predict_proba(real_rows))
    assert difference.max() <= 1e-5


def test_boosting_rows_sitting_on_a_split_threshold_score_the_same(boosting_model, real_rows):
    """It computes in double precision: decisions at the model threshold match scikit-learn exactly."""
    lean, _ = build_scorer(boosting_model, fast_path=True, verification=real_rows)
    onnx_decisions = boosting_model.decide(score_frame(lean, real_rows, boosting_model.spec))
    assert (onnx_decisions == boosting_model.decide(boosting_model.predict_proba(real_rows))).all()


def test_records_and_frames_give_the_same_probabilities(logistic_model, real_rows):
    """It scores request records (missing bmi as None) like the validated frame rows."""
    lean, _ = build_scorer(logistic_model, fast_path=True, verification=real_rows)
    rows = real_rows.head(50)
    records = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()}
        for r in rows[logistic_model.spec.feature_names].to_dict("records")
    ]
    from_records = lean.proba(columns_from_records(records, logistic_model.spec))
    assert from_records == pytest.approx(score_frame(lean, rows, logistic_model.spec), abs=1e-12)


def test_fast_path_off_uses_scikit_learn(logistic_model, real_rows):
    """It scores with scikit-learn when the fast path is turned off in settings."""
    chosen, path = build_scorer(logistic_model, fast_path=False, verification=real_rows)
    assert isinstance(chosen, SklearnScorer) and "turned off" in path.reason


def test_no_verification_data_falls_back(logistic_model):
    """It does not trust an unverified conversion: without data, scikit-learn scores."""
    chosen, path = build_scorer(logistic_model, fast_path=True, verification=None, missing_reason="file gone")
    assert isinstance(chosen, SklearnScorer) and "file gone" in path.reason


def test_a_mismatch_falls_back_to_scikit_learn(logistic_model, real_rows, monkeypatch):
    """It keeps scikit-learn, with the measured difference, when verification fails."""
    monkeypatch.setattr(scorer, "TOLERANCE", -1.0)
    chosen, path = build_scorer(logistic_model, fast_path=True, verification=real_rows)
    assert isinstance(chosen, SklearnScorer)
    assert path.active == "sklearn" and "differs" in path.reason and path.max_abs_diff is not None


class _Unconvertible(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has no converter for."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        return np.tile([0.7, 0.3], (len(X), 1))


def test_a_conversion_failure_falls_back_to_scikit_learn(logistic_model, real_rows):
    """It scores with scikit-learn and says why when the pipeline cannot be converted."""
    pipeline = logistic_model.pipeline
    unconvertible = type(logistic_model)(
        pipeline=type(pipeline)([pipeline.steps[0], ("classifier", _Unconvertible().fit(None, None))]),
        threshold=0.5,
        spec_yaml=logistic_model.spec_yaml,
        info=logistic_model.info,
    )
    chosen, path = build_scorer(unconvertible, fast_path=True, verification=real_rows)
    assert isinstance(chosen, SklearnScorer) and path.reason.startswith("ONNX conversion failed")
    assert chosen.proba(columns_from_records([PATIENT], unconvertible.spec)) == pytest.approx([0.3])
