"""Data tier for every declared model: specs load, raw files match, names map both ways."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from clinrisk.data import load_training_data, read_table, validate_frame
from clinrisk.errors import DataValidationError
from clinrisk.retraining import data_path_for
from clinrisk.spec import load_spec
from support import REPO

MODELS = sorted(path.stem for path in (REPO / "models").glob("*.yaml"))
DIABETES_QUERY = {
    "pregnancies": "3",
    "glucose": "200",
    "blood_pressure": "100",
    "skin_thickness": "50",
    "insulin": "200",
    "bmi": "40",
    "diabetes_pedigree_function": "0.5",
    "age": "55",
}


def spec_of(name: str):
    return load_spec(REPO / "models" / f"{name}.yaml")


def test_every_model_has_a_spec():
    """The four models of issue 16 are declared."""
    assert {"stroke", "diabetes", "anemia", "diabetes_progression"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_raw_file_matches_its_checksum_and_its_spec(name):
    """Each spec's raw file has the declared sha256 and validates with the API's feature names."""
    spec = spec_of(name)
    frame = load_training_data(spec, data_path_for(spec, None), expected_sha256=spec.data.sha256)
    assert spec.data.sha256 and set(spec.feature_names) <= set(frame.columns)
    assert frame[spec.target.column].nunique() >= 2


@pytest.mark.parametrize("name", MODELS)
def test_record_model_and_signature_follow_the_spec(name):
    """The request model has exactly the spec's features, under their API names."""
    spec = spec_of(name)
    assert list(spec.record_model.model_fields) == spec.feature_names


def test_anemia_data_columns_become_api_names():
    """Data to API: `%Red Pixel` and `Hb` in the file become red_pixel_pct and hemoglobin, values intact."""
    spec = spec_of("anemia")
    raw = pd.read_csv(REPO / spec.data.path)
    frame = load_training_data(spec, REPO / spec.data.path)
    assert frame["red_pixel_pct"].tolist() == raw["%Red Pixel"].tolist()
    assert frame["hemoglobin"].tolist() == raw["Hb"].tolist()
    assert "%Red Pixel" not in frame.columns
    assert frame["Anaemic"].sum() == 26


def test_anemia_api_names_go_back_to_data_columns():
    """API to data: the reverse mapping restores the file's own column names and values."""
    spec = spec_of("anemia")
    raw = pd.read_csv(REPO / spec.data.path)
    frame = load_training_data(spec, REPO / spec.data.path)
    back = spec.to_data_columns(frame[spec.feature_names])
    columns = ["%Red Pixel", "%Green pixel", "%Blue pixel", "Hb"]
    assert list(back.columns) == columns
    pd.testing.assert_frame_equal(back, raw[columns], check_dtype=False)


def test_anemia_file_with_api_names_validates_like_the_raw_file(tmp_path):
    """A scoring file may use either naming: both give the same validated rows."""
    spec = spec_of("anemia")
    raw = pd.read_csv(REPO / spec.data.path)
    renamed = raw.rename(columns={v: k for k, v in spec.column_map.items()})
    renamed.to_csv(tmp_path / "api-names.csv", index=False)
    one = validate_frame(read_table(REPO / spec.data.path, spec), spec, require_target=False)
    two = validate_frame(read_table(tmp_path / "api-names.csv", spec), spec, require_target=False)
    pd.testing.assert_frame_equal(one[spec.feature_names], two[spec.feature_names])


def test_anemia_request_uses_api_names_only():
    """A request body takes red_pixel_pct; the data's `%Red Pixel` is an unknown field there."""
    model = spec_of("anemia").record_model
    patient = {"red_pixel_pct": 43.3, "green_pixel_pct": 30.8, "blue_pixel_pct": 25.9, "hemoglobin": 6.3}
    assert model.model_validate(patient, strict=True).red_pixel_pct == 43.3
    with pytest.raises(ValidationError, match="%Red Pixel"):
        model.model_validate({**patient, "%Red Pixel": 43.3}, strict=True)


def test_missing_mapped_column_is_named_both_ways(tmp_path):
    """A file without `%Red Pixel` fails naming red_pixel_pct and the data's name."""
    spec = spec_of("anemia")
    pd.read_csv(REPO / spec.data.path).drop(columns="%Red Pixel").to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataValidationError, match=r"red_pixel_pct \(or '%Red Pixel'\)"):
        load_training_data(spec, tmp_path / "a.csv")


def test_query_parameters_make_a_valid_diabetes_record():
    """The issue's GET query (all strings) validates strictly once parsed by the spec."""
    spec = spec_of("diabetes")
    record = spec.record_model.model_validate(spec.record_from_query(DIABETES_QUERY), strict=True)
    assert record.glucose == 200.0 and record.diabetes_pedigree_function == 0.5


def test_query_aliases_and_empty_values():
    """`bp` and `dpf` are accepted as query names, and an empty nullable value is missing."""
    spec = spec_of("diabetes")
    params = {**DIABETES_QUERY, "insulin": ""}
    params["bp"], params["dpf"] = params.pop("blood_pressure"), params.pop("diabetes_pedigree_function")
    record = spec.record_model.model_validate(spec.record_from_query(params), strict=True)
    assert record.blood_pressure == 100.0 and record.insulin is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"glucose": "high"}, "glucose"),
        ({"age": "nan"}, "age"),
        ({"age": "200"}, "age"),
        ({"foo": "1"}, "foo"),
    ],
)
def test_bad_query_values_name_the_field(change, field):
    """A value that is not a number, out of range, or an unknown parameter names the field."""
    spec = spec_of("diabetes")
    with pytest.raises(ValidationError) as caught:
        spec.record_model.model_validate(spec.record_from_query({**DIABETES_QUERY, **change}), strict=True)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


@pytest.mark.parametrize(("value", "message"), [("fast", "target must be a number"), ("", "missing target")])
def test_regression_target_must_be_a_number(tmp_path, value, message):
    """A non-numeric or missing progression value stops training, naming the column and line."""
    spec = spec_of("diabetes_progression")
    raw = pd.read_csv(REPO / spec.data.path, dtype={"progression": object})
    raw.loc[3, "progression"] = value
    raw.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(DataValidationError, match=message) as caught:
        load_training_data(spec, tmp_path / "p.csv")
    assert caught.value.problems[0]["column"] == "progression" and caught.value.problems[0]["lines"] == [5]


def test_regression_spec_needs_a_floor():
    """A regression objective without its floor is refused, naming the field."""
    from clinrisk.spec import ModelSpec

    raw = spec_of("diabetes_progression").model_dump(mode="json")
    raw["objective"] = {"kind": "regression", "metric": "r2"}
    with pytest.raises(ValidationError, match="floor"):
        ModelSpec.model_validate(raw)


@pytest.mark.parametrize(
    ("added", "repeats"),
    [
        ([("bp", "90")], {"blood_pressure": ["blood_pressure", "bp"]}),
        ([("blood_pressure", "90")], {"blood_pressure": ["blood_pressure", "blood_pressure"]}),
        ([("age", "")], {"age": ["age", "age"]}),
        (
            [("dpf", "0.1"), ("age", "5"), ("age", "6")],
            {
                "diabetes_pedigree_function": ["diabetes_pedigree_function", "dpf"],
                "age": ["age", "age", "age"],
            },
        ),
        ([("foo", "1"), ("foo", "2")], {"foo": ["foo", "foo"]}),
    ],
    ids=["alias-beside-name", "name-twice", "empty-second", "two-features", "unknown-twice"],
)
def test_a_feature_given_twice_in_a_query_is_refused(added, repeats):
    """Each feature given more than once, under its name or an alias, is named with its keys."""
    from werkzeug.datastructures import MultiDict

    from clinrisk.errors import RepeatedQueryParameters

    spec = spec_of("diabetes")
    params = MultiDict(DIABETES_QUERY)
    for key, value in added:
        params.add(key, value)
    with pytest.raises(RepeatedQueryParameters) as caught:
        spec.record_from_query(params)
    assert caught.value.repeats == repeats


def test_an_alias_in_a_plain_dict_beside_its_name_is_refused():
    """A dict cannot repeat a key, but `bp` beside `blood_pressure` still gives one feature twice."""
    from clinrisk.errors import RepeatedQueryParameters

    spec = spec_of("diabetes")
    with pytest.raises(RepeatedQueryParameters) as caught:
        spec.record_from_query({**DIABETES_QUERY, "bp": "90"})
    assert caught.value.message_for("blood_pressure") == "given 2 times (blood_pressure, bp): give it once"
    assert str(caught.value) == "blood_pressure: given 2 times (blood_pressure, bp): give it once"


@pytest.mark.parametrize(
    "change",
    [
        {"glucose": {"column": "Insulin"}},  # two features read one data column
        {"bmi": {"query_aliases": ["age"]}},  # an alias that is another feature's name
        {"bmi": {"aliases": ["bp"]}},  # one alias for two features (blood_pressure has `bp`)
    ],
)
def test_ambiguous_names_are_refused(change):
    """A column, alias or query name that could mean two features makes the spec invalid."""
    from clinrisk.spec import ModelSpec

    raw = spec_of("diabetes").model_dump(mode="json")
    for feature, values in change.items():
        raw["features"][feature].update(values)
    with pytest.raises(ValidationError, match="ambiguous"):
        ModelSpec.model_validate(raw)
