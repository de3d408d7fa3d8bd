"""The stored lean scorer: numpy preprocessing plus the model's own arithmetic, checked at registration."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from clinrisk import bundle, signing
from clinrisk.serving.numpy_scorer import LINEAR, TREES, LeanScorer, lean_parameters
from clinrisk.serving.scorer import columns_from_frame, columns_from_records, load_verification_data

KEY = b"k" * 32


@pytest.fixture(scope="module")
def real_rows(stroke_spec) -> pd.DataFrame:
    frame, where = load_verification_data(stroke_spec)
    assert frame is not None, where
    return frame


def signed(model, rows: pd.DataFrame) -> dict[str, bytes]:
    return bundle.build_bundle(model, rows[model.spec.feature_names], "run-1", KEY)


def resigned(files: dict[str, bytes], edit) -> dict[str, bytes]:
    """The bundle with its JSON edited and signed again (as an older release would have signed it)."""
    meta = json.loads(files[bundle.META_FILE])
    edit(meta)
    payload = json.dumps(meta).encode()
    return {
        **files,
        bundle.META_FILE: payload,
        bundle.SIGNATURE_FILE: signing.sign(KEY, bundle.BUNDLE_PURPOSE, payload).encode(),
    }


def served(files: dict[str, bytes]) -> bundle.ServedModel:
    return bundle.read_bundle(files, KEY, name="stroke", version="1", run_id="run-1")


@pytest.mark.parametrize(("model_fixture", "kind"), [("logistic_model", LINEAR), ("boosting_model", TREES)])
def test_the_lean_scorer_matches_scikit_learn_on_every_real_row(request, model_fixture, kind, real_rows):
    """It scores both candidate families within 1e-5 of scikit-learn, and decides identically."""
    model = request.getfixturevalue(model_fixture)
    parameters, graph = lean_parameters(model.pipeline)
    assert parameters["kind"] == kind and (graph is None) == (kind == LINEAR)
    raw = LeanScorer(parameters, graph).proba(columns_from_frame(real_rows, model.spec))
    expected = model.pipeline.predict_proba(real_rows[model.spec.feature_names])[:, 1]
    assert np.abs(raw - expected).max() <= 1e-5
    assert ((raw >= model.threshold) == (expected >= model.threshold)).all()


@pytest.mark.parametrize("model_fixture", ["logistic_model", "boosting_model"])
def test_unknown_categories_and_missing_numbers_score_like_scikit_learn(request, model_fixture):
    """It treats an unseen category as all-zero one-hot and imputes a missing number, as scikit-learn."""
    model = request.getfixturevalue(model_fixture)
    records = [
        {"gender": "Unknown-gender", "age": 67.0, "hypertension": 0, "heart_disease": 1,
         "ever_married": "Yes", "work_type": "Private", "Residence_type": "Urban",
         "avg_glucose_level": 228.69, "bmi": None, "smoking_status": "formerly smoked"},
        {"gender": "Male", "age": None, "hypertension": 1, "heart_disease": 0,
         "ever_married": "", "work_type": "children", "Residence_type": "Rural",
         "avg_glucose_level": 80.0, "bmi": 30.5, "smoking_status": "smokes"},
    ]  # fmt: skip
    parameters, graph = lean_parameters(model.pipeline)
    columns = columns_from_records(records, model.spec)
    expected = model.pipeline.predict_proba(pd.DataFrame(columns))[:, 1]
    for batch in (records[:1], records):  # the per-value and the vectorised encoders
        got = LeanScorer(parameters, graph).proba(columns_from_records(batch, model.spec))
        assert got == pytest.approx(expected[: len(batch)], abs=1e-12)
    singles = [LeanScorer(parameters, graph).proba_one(record) for record in records]
    assert singles == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("model_fixture", ["logistic_model", "boosting_model"])
def test_one_record_scores_as_in_a_batch_on_every_real_row(request, model_fixture, real_rows):
    """The one-record path (Python floats) gives the batch path's probability and decision on every
    real row, calibrated, through the signed bundle as the service holds it."""
    model = request.getfixturevalue(model_fixture)
    served_model = served(signed(model, real_rows))
    columns = columns_from_frame(real_rows, model.spec)
    batch = served_model.scorer.proba(columns)
    records = real_rows[model.spec.feature_names].astype(object).where(real_rows.notna(), None)
    singles = np.array([served_model.scorer.proba_one(r) for r in records.to_dict("records")])
    assert np.abs(singles - batch).max() <= 1e-12
    assert served_model.decide_each(singles.tolist()) == served_model.decide(batch).tolist()


def test_the_check_at_registration_covers_the_one_record_path(boosting_model, real_rows, monkeypatch):
    """A one-record path that disagrees with the batch path fails the check, and scikit-learn serves."""
    monkeypatch.setattr(LeanScorer, "proba_one", lambda self, record: 0.5)
    meta = json.loads(signed(boosting_model, real_rows)[bundle.META_FILE])
    assert not meta["lean"]["servable"]
    assert "the lean scorer differs from scikit-learn" in meta["lean"]["reason"]


def test_a_signed_bundle_carries_the_verified_lean_scorer(boosting_model, real_rows):
    """It stores the lean scorer with its check at registration, and serves it from the bundle."""
    files = signed(boosting_model, real_rows)
    meta = json.loads(files[bundle.META_FILE])
    assert meta["lean"]["servable"] and meta["lean"]["verification"]["rows"] == len(real_rows)
    model = served(files)
    assert model.scorer.path == TREES
    assert "lean scorer verified against scikit-learn" in model.verification["reason"]
    rows = real_rows.head(300)
    assert np.abs(model.predict_proba(rows) - boosting_model.predict_proba(rows)).max() <= 1e-5


def test_a_version_signed_before_lean_scorers_still_loads_with_onnx(logistic_model, real_rows):
    """It serves an older bundle (no lean section) through its full ONNX graph."""
    files = resigned(signed(logistic_model, real_rows), lambda meta: meta.pop("lean"))
    model = served(files)
    assert model.scorer.path == "onnx" and "ONNX graph verified" in model.verification["reason"]
    rows = real_rows.head(300)
    assert np.abs(model.predict_proba(rows) - logistic_model.predict_proba(rows)).max() <= 1e-5


def test_a_tampered_tree_graph_is_refused(boosting_model, real_rows):
    """It refuses a bundle whose lean graph does not match the signed hash."""
    files = signed(boosting_model, real_rows)
    files[bundle.LEAN_FILE] += b"\0"
    with pytest.raises(bundle.BundleError, match="lean scorer's graph"):
        served(files)


def test_a_model_without_a_lean_path_keeps_onnx_and_says_why(logistic_model, real_rows):
    """It signs no lean scorer for a shape it cannot express exactly, and /model's reason says so."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    forest = Pipeline(
        [
            logistic_model.pipeline.steps[0],
            ("classifier", RandomForestClassifier(n_estimators=5, random_state=0)),
        ]
    )
    with pytest.raises(NotImplementedError, match="RandomForestClassifier"):
        lean_parameters(
            forest.fit(
                real_rows[logistic_model.spec.feature_names], real_rows[logistic_model.spec.target.column]
            )
        )


def test_onnx_serves_a_model_the_lean_scorer_does_not_cover_and_says_why(logistic_model, real_rows):
    """/model's reason names the path in use (the ONNX graph) and why: what the lean scorer covers."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    (_, preprocess), (_, classifier) = logistic_model.pipeline.steps
    steps = [
        ("preprocess", clone(preprocess)),
        ("rescale", StandardScaler()),
        ("classifier", clone(classifier)),
    ]
    rescaled = Pipeline(steps)
    rescaled.fit(real_rows[logistic_model.spec.feature_names], real_rows[logistic_model.spec.target.column])
    model = served(signed(dataclasses.replace(logistic_model, pipeline=rescaled), real_rows))
    assert model.scorer.path == "onnx"
    assert model.verification["reason"] == (
        f"ONNX graph verified against scikit-learn on {len(real_rows)} rows; it serves this model because "
        f"the lean scorer covers only {bundle.LEAN_SCOPE} (the pipeline is not preprocess + classifier)"
    )


@pytest.mark.parametrize(
    ("stored", "said"),
    [
        (
            "no lean scorer: NotImplementedError: Ridge has no lean path",
            f"because the lean scorer covers only {bundle.LEAN_SCOPE} (Ridge has no lean path)",
        ),
        (
            "no lean scorer: RuntimeError: bad graph",
            "because the lean scorer failed: RuntimeError: bad graph",
        ),
        ("the lean scorer differs from scikit-learn by 0.1 > 1e-05", "because the lean scorer differs"),
    ],
    ids=["not-covered", "failed", "differs"],
)
def test_a_bundle_signed_with_the_old_wording_says_why_in_the_new(logistic_model, real_rows, stored, said):
    """Versions registered before the rewording read as today's: which path serves, and why."""

    def without_lean(meta):
        meta["lean"] = {"servable": False, "reason": stored}

    model = served(resigned(signed(logistic_model, real_rows), without_lean))
    assert model.scorer.path == "onnx" and said in model.verification["reason"]
    assert "no lean scorer" not in model.verification["reason"]


def test_a_lean_scorer_that_fails_its_check_is_a_warning_and_onnx_serves(
    logistic_model, real_rows, monkeypatch, caplog
):
    """A fault in the lean scorer (not a model it does not cover) is logged as a warning and named."""
    from clinrisk.serving import numpy_scorer

    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime refused the graph")

    monkeypatch.setattr(numpy_scorer, "LeanScorer", broken)
    with caplog.at_level("WARNING", logger="clinrisk.bundle"):
        model = served(signed(logistic_model, real_rows))
    assert model.scorer.path == "onnx"
    assert (
        "the lean scorer failed: RuntimeError: onnxruntime refused the graph" in model.verification["reason"]
    )
    assert any(r.levelname == "WARNING" and "failed its check" in r.getMessage() for r in caplog.records)
