"""Model tier: training on the real data, loose guards and behavioural checks."""

from __future__ import annotations

import pytest

from clinrisk.data import validate_frame
from clinrisk.spec import load_spec
from clinrisk.threshold import ThresholdChoice
from clinrisk.train import CandidateScore, select_best, train_model


@pytest.fixture(scope="module")
def clean_stroke(stroke_spec, raw_stroke):
    return validate_frame(raw_stroke, stroke_spec, require_target=True)


@pytest.fixture(scope="module")
def trained(stroke_spec, clean_stroke):
    """The full spec (both candidates, 5 folds) trained on the real data with its seed."""
    return train_model(stroke_spec, clean_stroke)


def test_holdout_quality_clears_the_guards(trained, stroke_spec):
    """With the spec's seed, holdout recall >= 0.60 and ROC-AUC >= 0.80 at the model's own threshold."""
    metrics = trained.holdout_metrics
    assert metrics["recall"] >= 0.60
    assert metrics["roc_auc"] >= 0.80
    assert metrics["precision"] >= stroke_spec.objective.precision_floor - 0.03


def test_both_candidates_were_compared_out_of_fold(trained, stroke_spec):
    """Every candidate in the spec gets out-of-fold scores; the best one is kept."""
    assert {c.name for c in trained.candidates} == {c.name for c in stroke_spec.candidates}
    best_recall = max(c.choice.recall for c in trained.candidates if c.choice)
    assert trained.best.choice.recall >= best_recall - stroke_spec.objective.selection_tolerance
    assert (
        trained.best.choice.precision
        >= stroke_spec.objective.precision_floor + stroke_spec.objective.safety_margin
    )


def test_the_holdout_is_stratified_and_untouched(trained, clean_stroke, stroke_spec):
    """The holdout keeps the positive rate and shares no row with the reference sample."""
    target = stroke_spec.target.column
    rate = trained.holdout[target].mean()
    assert abs(rate - clean_stroke[target].mean()) < 0.01
    assert trained.rows == {"total": 5110, "train": 4088, "holdout": 1022, "positives_train": 199}
    holdout_ids = set(trained.holdout[stroke_spec.id_column])
    assert len(holdout_ids) == 1022 and holdout_ids <= set(clean_stroke[stroke_spec.id_column])
    columns = [*stroke_spec.feature_names, target]
    shared = trained.reference_sample[columns].merge(trained.holdout[columns], how="inner", on=columns)
    assert len(trained.reference_sample) > 0 and shared.empty


def test_training_is_reproducible(fast_settings, clean_stroke):
    """The same seed gives the same candidate, threshold and holdout metrics."""
    spec = load_spec(fast_settings.spec_path)
    first, again = train_model(spec, clean_stroke, seed=7), train_model(spec, clean_stroke, seed=7)
    assert again.best.name == first.best.name
    assert again.model.threshold == pytest.approx(first.model.threshold)
    assert again.holdout_metrics == pytest.approx(first.holdout_metrics)


def test_older_patients_get_higher_risk(trained, clean_stroke):
    """Direction: the same patients twenty years older are scored as riskier on average."""
    sample = clean_stroke.sample(300, random_state=0)
    older = sample.assign(age=(sample["age"] + 20).clip(upper=120))
    assert trained.model.predict_proba(older).mean() > trained.model.predict_proba(sample).mean()


def test_predictions_ignore_the_row_id(trained, clean_stroke):
    """Invariance: changing the id column changes no probability."""
    sample = clean_stroke.head(200)
    renumbered = sample.assign(id=sample["id"] + 1_000_000)
    assert (trained.model.predict_proba(renumbered) == trained.model.predict_proba(sample)).all()


def test_the_model_flags_at_its_own_threshold(trained, clean_stroke):
    """The decision is exactly probability >= the model's threshold."""
    scored = trained.model.predict(clean_stroke.head(500))
    assert ((scored["probability"] >= trained.model.threshold).astype(int) == scored["prediction"]).all()


def test_selection_prefers_pr_auc_among_near_equal_recalls():
    """Within the tolerance, the candidate with the better PR-AUC wins; beyond it, recall wins."""
    steady = CandidateScore("steady", 0.84, 0.22, ThresholdChoice(0.6, 0.16, 0.70, 0.155))
    lucky = CandidateScore("lucky", 0.83, 0.19, ThresholdChoice(0.5, 0.16, 0.71, 0.155))
    assert select_best([lucky, steady], tolerance=0.02).name == "steady"
    assert select_best([lucky, steady], tolerance=0.0).name == "lucky"


def test_the_soft_vote_averages_its_members_and_converts_to_onnx(stroke_spec, clean_stroke):
    """The ensemble candidate is built from the named candidates and the lean scorer serves it."""
    from clinrisk.features import build_pipeline
    from clinrisk.model import RiskModel
    from clinrisk.serving.scorer import build_scorer

    vote = build_pipeline(stroke_spec, stroke_spec.candidate("soft_vote"), seed=0)
    sample = clean_stroke.sample(2000, random_state=0)
    vote.fit(sample[stroke_spec.feature_names], sample["stroke"])
    members = vote.named_steps["classifier"].named_estimators_
    assert set(members) == {"logistic_regression", "hist_gradient_boosting"}
    features = vote.named_steps["preprocess"].transform(sample[stroke_spec.feature_names].head(50))
    mean = (
        members["logistic_regression"].predict_proba(features)
        + members["hist_gradient_boosting"].predict_proba(features)
    ) / 2
    assert vote.predict_proba(sample[stroke_spec.feature_names].head(50)) == pytest.approx(mean)
    model = RiskModel(vote, 0.5, stroke_spec.to_yaml())
    _, path = build_scorer(model, fast_path=True, verification=sample[stroke_spec.feature_names])
    assert path.active == "onnx", path.reason
