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


@pytest.mark.parametrize("cell", [" Male", "Male  ", "\tMale", None])
def test_one_odd_category_cell_among_known_ones(stroke_spec, raw_stroke, cell):
    """A category with spaces around it is accepted stripped; a missing one is named by its line."""
    frame = corrupt(raw_stroke, "gender", [7], cell)
    if cell is None:
        with pytest.raises(DataValidationError, match=r"'gender': missing value \(1 row; line 9\)"):
            validate_frame(frame, stroke_spec, require_target=True)
        return
    clean = validate_frame(frame, stroke_spec, require_target=True)
    assert clean.loc[7, "gender"] == "Male"
    assert clean["gender"].tolist() == raw_stroke["gender"].where(raw_stroke.index != 7, "Male").tolist()


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


ODD_IDS = ["000731", "0731", "731", "12345678901234567891", " 731", "A-12 b", "4402.0", "NA", "1e5"]


def _with_ids(raw: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    frame = raw.head(len(ids)).copy()
    frame["id"] = ids
    return frame


def _write(frame: pd.DataFrame, path, sep: str = ",", decimal: str = ".") -> None:
    frame.to_csv(path, index=False, sep=sep, decimal=decimal)


def test_untyped_columns_are_read_exactly_as_text(stroke_spec, raw_stroke, tmp_path):
    """Ids with leading zeros, 20 digits, spaces, letters or 'NA' come back as the same text."""
    frame = _with_ids(raw_stroke, ODD_IDS)
    frame["ward"] = ["007", "7", "", "x;y", "1.50", "None", "b", "c", "d"]
    _write(frame, tmp_path / "ids.csv")
    read = read_table(tmp_path / "ids.csv", stroke_spec)
    assert read["id"].tolist() == ODD_IDS
    assert read["ward"].fillna("").tolist() == ["007", "7", "", "x;y", "1.50", "None", "b", "c", "d"]
    assert read["age"].dtype == float and read["bmi"].isna().sum() == frame["bmi"].isna().sum()


def test_ids_that_differ_only_as_numbers_are_not_duplicates(stroke_spec, raw_stroke, tmp_path):
    """`0731`, `000731` and `731` are three patients; the same text twice is a duplicate."""
    _write(_with_ids(raw_stroke, ODD_IDS), tmp_path / "ids.csv")
    validate_frame(read_table(tmp_path / "ids.csv", stroke_spec), stroke_spec, require_target=False)
    _write(_with_ids(raw_stroke, ["0731", "731", "0731"]), tmp_path / "dup.csv")
    with pytest.raises(DataValidationError, match=r"duplicate id \(2 rows; lines 2, 4\)"):
        validate_frame(read_table(tmp_path / "dup.csv", stroke_spec), stroke_spec, require_target=False)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_files_are_read(stroke_spec, raw_stroke, tmp_path, sep):
    """The delimiter is the one of , ; tab | found most in the header; ';' files use decimal commas."""
    frame = _with_ids(raw_stroke, ODD_IDS[:5])
    _write(frame, tmp_path / "f.csv", sep=sep, decimal="," if sep == ";" else ".")
    read = validate_frame(read_table(tmp_path / "f.csv", stroke_spec), stroke_spec, require_target=False)
    assert read["id"].tolist() == ODD_IDS[:5]
    assert read["avg_glucose_level"].tolist() == frame["avg_glucose_level"].tolist()
    assert read["gender"].tolist() == frame["gender"].tolist()


@pytest.mark.parametrize(("sep", "named"), [(":", "colon"), (" ", "space"), ("^", None)])
def test_a_header_read_as_one_column_is_shown_with_the_likely_delimiter(
    stroke_spec, raw_stroke, tmp_path, sep, named
):
    """An unknown delimiter says what the header was read as and, when it can, which delimiter it saw."""
    raw_stroke.head(3).to_csv(tmp_path / "f.csv", index=False, sep=sep)
    with pytest.raises(DataValidationError) as caught:
        validate_frame(read_table(tmp_path / "f.csv", stroke_spec), stroke_spec, require_target=True)
    message = str(caught.value)
    assert "the header was read as one column, 'id" in message
    if named:
        assert f"looks {named}-separated" in message
    else:
        assert "looks" not in message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([7], "(1 row; line 9)"),
        ([7, 9], "(2 rows; lines 9, 11)"),
        ([7, 8, 9, 10, 11, 12], "(6 rows; first at lines 9-13)"),
        ([1, 2, 3, 50, 60], "(5 rows; lines 3-5, 52, 62)"),
    ],
)
def test_problem_counts_and_lines_read_naturally(stroke_spec, raw_stroke, rows, expected):
    """Counts agree in number with their noun, and consecutive lines are written as a range."""
    with pytest.raises(DataValidationError) as caught:
        validate_frame(corrupt(raw_stroke, "age", rows, -3), stroke_spec, require_target=True)
    assert f"value below minimum 0 {expected}" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bmi": float("nan")}, {"bmi": "no observed value in 5110 rows"}),
        ({"age": 50.0}, {"age": "a single value (50.0)"}),
        ({"hypertension": 0}, {"hypertension": "a single value (0)"}),
        ({"gender": "Female"}, {"gender": "a single value ('Female')"}),
        (
            {"bmi": float("nan"), "smoking_status": "Unknown"},
            {"bmi": "no observed value", "smoking_status": "a single value ('Unknown')"},
        ),
    ],
    ids=["bmi-all-missing", "age-constant", "flag-constant", "category-constant", "two-at-once"],
)
def test_a_feature_with_nothing_to_learn_is_an_error_naming_it(
    stroke_spec, raw_stroke, tmp_path, changes, named
):
    """No observed value, or one value in every row: training stops naming each such feature."""
    frame = raw_stroke.copy()
    for column, value in changes.items():
        frame[column] = value
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataValidationError) as caught:
        load_training_data(stroke_spec, tmp_path / "t.csv")
    message = str(caught.value)
    assert message.startswith("cannot train")
    for column, why in named.items():
        assert f"feature '{column}': {why}" in message
    assert {p["column"] for p in caught.value.problems} == set(named)


def test_a_feature_missing_in_most_rows_is_a_warning(stroke_spec, raw_stroke):
    """Missing in over half the rows trains, with a warning; the real file (4 % missing bmi) has none."""
    from clinrisk.data import data_warnings

    assert data_warnings(raw_stroke, stroke_spec) == []
    frame = raw_stroke.copy()
    frame["bmi"] = frame["bmi"].fillna(28.0)
    frame.loc[frame.index[: len(frame) // 2], "bmi"] = float("nan")
    assert data_warnings(frame, stroke_spec) == []  # exactly half: not "most"
    frame.loc[frame.index[: int(len(frame) * 0.6)], "bmi"] = float("nan")
    warnings = data_warnings(frame, stroke_spec)
    assert len(warnings) == 1 and warnings[0].startswith("feature 'bmi' is missing in 60% of training rows")


def test_measured_columns_take_the_usual_missing_markers(stroke_spec, raw_stroke, tmp_path):
    """A monitored file's outcome may say NA or N/A (as R and Excel write it); ids stay text."""
    frame = raw_stroke.head(4).copy()
    frame["id"] = ["NA", "0731", "731", "N/A"]
    frame["outcome"] = ["NA", "1", "", "N/A"]
    frame.to_csv(tmp_path / "m.csv", index=False)
    read = read_table(tmp_path / "m.csv", stroke_spec, measured=["outcome"])
    assert read["id"].tolist() == ["NA", "0731", "731", "N/A"]
    assert read["outcome"].isna().tolist() == [True, False, True, True] and read["outcome"][1] == 1
