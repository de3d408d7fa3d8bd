"""Data tier: every class of bad training or scoring file gives a clear error."""

from __future__ import annotations

import pandas as pd
import pytest

from clinrisk.data import load_training_data, read_table, split_valid_rows, validate_frame
from clinrisk.errors import DataValidationError
from support import RAW_STROKE


def corrupt(raw: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    frame = raw.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[rows, column] = value
    return frame


def test_the_real_file_is_valid_and_typed(stroke_spec, raw_stroke):
    """It accepts all 5,110 real rows, with binary columns as integers and missing bmi kept."""
    clean = validate_frame(raw_stroke, stroke_spec, require_target=True)
    assert len(clean) == 5110
    assert clean["hypertension"].dtype == "int64"
    assert clean["bmi"].isna().sum() == 201
    assert clean["stroke"].sum() == 249


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("gender", "Alien", "unknown category"),
        ("age", 200, "above maximum"),
        ("age", -3, "below minimum"),
        ("avg_glucose_level", "high", "non-numeric"),
        ("age", None, "missing value"),
        ("hypertension", 3, "0 or 1"),
        ("stroke", 2, "target must be binary"),
    ],
)
def test_bad_values_name_the_column_and_first_lines(stroke_spec, raw_stroke, column, value, message):
    """It names the column, the problem and the file lines of the first offending rows."""
    frame = corrupt(raw_stroke, column, [3, 10], value)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, stroke_spec, require_target=True)
    problem = next(p for p in caught.value.problems if p["column"] == column)
    assert message in problem["message"]
    assert problem["lines"] == [5, 12]  # row 3 is line 5: the header is line 1
    assert f"'{column}'" in str(caught.value)


def test_missing_columns_are_listed(stroke_spec, raw_stroke):
    """It lists every missing column at once."""
    with pytest.raises(DataValidationError, match=r"missing column.*bmi.*smoking_status"):
        validate_frame(raw_stroke.drop(columns=["bmi", "smoking_status"]), stroke_spec, require_target=True)


def test_duplicate_ids_are_reported(stroke_spec, raw_stroke):
    """It reports rows that share an id."""
    frame = raw_stroke.copy()
    frame.loc[7, "id"] = frame.loc[2, "id"]
    with pytest.raises(DataValidationError, match="duplicate id"):
        validate_frame(frame, stroke_spec, require_target=True)


def test_an_empty_file_is_rejected(stroke_spec, tmp_path):
    """It rejects a zero-byte file and a header-only file."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="empty"):
        read_table(empty, stroke_spec)
    header_only = tmp_path / "header.csv"
    header_only.write_text(RAW_STROKE.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataValidationError, match="no data rows"):
        validate_frame(read_table(header_only, stroke_spec), stroke_spec, require_target=True)


def test_a_single_class_target_is_rejected(stroke_spec, raw_stroke):
    """It refuses to train on a file whose target has one class."""
    with pytest.raises(DataValidationError, match="single class"):
        validate_frame(raw_stroke[raw_stroke.stroke == 0], stroke_spec, require_target=True)


def test_a_changed_raw_file_fails_its_checksum(stroke_spec, tmp_path):
    """It refuses a raw file whose sha256 differs from the spec's."""
    copy = tmp_path / "stroke.csv"
    copy.write_text(RAW_STROKE.read_text().replace("Urban", "Rural", 1))
    with pytest.raises(DataValidationError, match="sha256"):
        load_training_data(stroke_spec, copy, expected_sha256=stroke_spec.data.sha256)


def test_scoring_rows_can_be_split_into_valid_and_rejects(stroke_spec, raw_stroke):
    """It keeps valid rows and gives each reject its line and reason."""
    frame = corrupt(raw_stroke.drop(columns=["stroke"]), "work_type", [0], "Astronaut")
    valid, rejects = split_valid_rows(frame, stroke_spec)
    assert len(valid) == 5109
    assert rejects["line"].tolist() == [2]
    assert "work_type: unknown category" in rejects["reason"].iloc[0]
