"""Code tier: the declared spec and what is derived from it."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from clinrisk.errors import SpecError
from clinrisk.spec import load_spec
from support import PATIENT


def test_spec_lists_every_column_of_the_raw_file(stroke_spec, raw_stroke):
    """It declares every feature column of the real data, and only those, as features."""
    columns = set(raw_stroke.columns) - {stroke_spec.id_column, stroke_spec.target.column}
    assert set(stroke_spec.feature_names) == columns
    assert set(stroke_spec.numeric_features) | set(stroke_spec.categorical_features) == columns


def test_record_model_accepts_a_real_patient(stroke_spec):
    """It accepts a record from the dataset as it is."""
    record = stroke_spec.record_model.model_validate(PATIENT)
    assert record.age == 67


def test_record_model_accepts_the_lowercase_alias_and_missing_bmi(stroke_spec):
    """It accepts residence_type for Residence_type and a patient without bmi."""
    patient = {k: v for k, v in PATIENT.items() if k not in ("Residence_type", "bmi")}
    record = stroke_spec.record_model.model_validate({**patient, "residence_type": "Rural"})
    assert record.Residence_type == "Rural"
    assert record.bmi is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gender": "Unknown"}, "gender"),
        ({"age": 130}, "age"),
        ({"age": "old"}, "age"),
        ({"hypertension": 2}, "hypertension"),
        ({"avg_glucose_level": None}, "avg_glucose_level"),
        ({"shoe_size": 42}, "shoe_size"),
    ],
)
def test_record_model_rejects_bad_values_naming_the_field(stroke_spec, change, field):
    """It rejects unknown categories, out-of-range or wrong-type values and unknown fields."""
    with pytest.raises(ValidationError) as caught:
        stroke_spec.record_model.model_validate({**PATIENT, **change})
    assert field in {str(error["loc"][0]) for error in caught.value.errors()}


def test_record_model_requires_every_non_nullable_field(stroke_spec):
    """It names a missing required field."""
    patient = {k: v for k, v in PATIENT.items() if k != "age"}
    with pytest.raises(ValidationError, match="age"):
        stroke_spec.record_model.model_validate(patient)


ONE_CANDIDATE = "[{name: lr, estimator: sklearn.linear_model.LogisticRegression}]"


@pytest.mark.parametrize(
    ("objective", "candidates", "field"),
    [
        (
            "{precision_floor: 2}",
            "[{name: lr, estimator: sklearn.linear_model.LogisticRegression}]",
            "objective.precision_floor",
        ),
        ("{precision_floor: 0.15}", "[]", "candidates"),
    ],
)
def test_a_broken_spec_fails_naming_the_file_and_field(tmp_path, objective, candidates, field):
    """It raises SpecError naming the file and the invalid field, and no field that is valid."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        "name: broken\ndata: {path: x.csv}\ntarget: {column: y}\nfeatures: {}\n"
        f"objective: {objective}\ncandidates: {candidates}\n"
    )
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    message = str(raised.value)
    assert str(path) in message.splitlines()[0]
    assert f"\n{field}\n" in message
    for valid in {"objective.precision_floor", "candidates"} - {field}:
        assert f"\n{valid}\n" not in message


def test_a_missing_spec_is_a_clear_error(tmp_path):
    """It says which spec file does not exist."""
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nothing.yaml")


@pytest.mark.parametrize("name", ["../models/stroke", "/etc/passwd", "stroke.yaml", "Stroke", "nosuch", ""])
def test_model_names_must_name_a_spec_in_the_spec_dir(settings, name):
    """It refuses a model name that is a path or names no spec, listing the known ones."""
    with pytest.raises(SpecError, match=r"unknown model.*stroke"):
        settings.spec_path_for(name)


@pytest.mark.parametrize(
    "estimator",
    ["sklearn.utils._testing.check_output", "sklearn.linear_model.LogisticRegressionX", "os.system"],
)
def test_only_allow_listed_estimator_classes_are_built(estimator, tmp_path):
    """It refuses any estimator path but the exact allow-listed classes, and imports nothing."""
    from clinrisk.features import build_estimator
    from clinrisk.spec import CandidateSpec

    marker = tmp_path / "ran"
    candidate = CandidateSpec(name="evil", estimator=estimator, params={"args": ["touch", str(marker)]})
    with pytest.raises(SpecError, match="must be one of"):
        build_estimator(candidate, seed=0)
    assert not marker.exists()


def test_an_ensemble_must_name_plain_candidates(tmp_path, stroke_spec):
    """A member that is not a candidate of the spec fails naming the ensemble and the member."""
    raw = stroke_spec.model_dump(mode="json")
    raw["candidates"].append(
        {"name": "vote", "estimator": "sklearn.ensemble.VotingClassifier", "members": ["forest"]}
    )
    path = tmp_path / "stroke.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"candidate 'vote': members \['forest'\]"):
        load_spec(path)
