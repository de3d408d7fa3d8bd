"""Batch scoring through pyarrow: the same probabilities as the service, and clear errors for bad files."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from web_fakes import FakeRegistry, make_app, signed_bundle, web_settings

from clinrisk.data import iter_table, read_table, validate_frame
from clinrisk.errors import DataValidationError
from clinrisk.predict import score_file

ROWS = 400  # enough to cover every category, missing bmi and both decisions


@pytest.fixture
def real_file(raw_stroke, tmp_path):
    path = tmp_path / "patients.csv"
    raw_stroke.head(ROWS).drop(columns=["stroke"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("model_fixture", ["logistic_model", "boosting_model"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_batch_and_service_give_the_same_probabilities(request, tmp_path, raw_stroke, model_fixture, suffix):
    """Every row scored by `score_file` matches POST /predict on the same patient to 1e-12."""
    model = request.getfixturevalue(model_fixture)
    settings = web_settings(tmp_path / "home", auth_enabled=False)
    served = signed_bundle(model, settings, "1")
    patients = raw_stroke.head(ROWS).drop(columns=["stroke"])
    source = tmp_path / f"in{suffix}"
    patients.to_parquet(source, index=False) if suffix == ".parquet" else patients.to_csv(source, index=False)
    report = score_file(served, "1", source, tmp_path / f"out{suffix}", chunk_rows=128, progress=False)
    assert report.rows_scored == ROWS and report.scoring_path == served.scorer.path
    scored = read_table(tmp_path / f"out{suffix}", model.spec)
    app = make_app(settings, FakeRegistry({"1": model}, "1"), watch=False)
    try:
        records = [_record(row) for row in validate_frame(patients, model.spec, False).to_dict("records")]
        answers = (
            app.test_client().post("/predict", json=[_only_features(r, model.spec) for r in records]).json
        )
    finally:
        app.extensions["clinrisk"].close()
    batch = scored["probability"].astype(float).tolist()
    service = [a["probability"] for a in answers]
    assert max(abs(b - s) for b, s in zip(batch, service, strict=True)) <= 1e-12
    assert scored["prediction"].astype(int).tolist() == [a["prediction"] for a in answers]
    assert scored["id"].astype(str).tolist() == patients["id"].astype(str).tolist()


def _record(row: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _only_features(record: dict, spec) -> dict:
    return {name: record[name] for name in spec.feature_names}


def _header_and_rows(raw_stroke, rows: int = 3) -> list[str]:
    return raw_stroke.head(rows).drop(columns=["stroke"]).to_csv(index=False).splitlines()


def _score_text(tmp_path, served, text: str | bytes, chunk_rows: int = 2) -> str:
    """Score a file holding `text`; return the error's message (the test fails if none is raised)."""
    path = tmp_path / "bad.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataValidationError) as caught:
        score_file(served, "1", path, tmp_path / "out.csv", chunk_rows=chunk_rows, progress=False)
    assert not (tmp_path / "out.csv").exists()
    return str(caught.value)


@pytest.fixture
def served(tmp_path, logistic_model):
    return signed_bundle(logistic_model, web_settings(tmp_path / "home"), "1")


@pytest.mark.parametrize(
    ("line", "column", "value", "message"),
    [
        (4, "age", "sixty", "non-numeric value"),
        (2, "avg_glucose_level", "1e999", "non-finite value"),
        (3, "age", "-4", "value below minimum"),
        (4, "hypertension", "2", "value must be 0 or 1"),
        (2, "smoking_status", "vapes", "unknown category"),
        (3, "gender", "", "missing value"),
    ],
)
def test_a_bad_value_names_its_column_and_line(tmp_path, raw_stroke, served, line, column, value, message):
    """A bad cell in a later chunk is named by column and line, and no output is left behind."""
    lines = _header_and_rows(raw_stroke)
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    error = _score_text(tmp_path, served, "\n".join(lines) + "\n")
    assert f"column '{column}': {message}" in error and f"line {line}" in error


def test_a_missing_column_is_named(tmp_path, raw_stroke, served):
    """A file without a feature's column says which column is missing."""
    frame = raw_stroke.head(3).drop(columns=["stroke", "bmi"])
    assert "missing column: bmi" in _score_text(tmp_path, served, frame.to_csv(index=False))


@pytest.mark.parametrize(
    ("text", "expected"),
    [(b"", "is empty"), (b"\n\n", "is empty"), (None, "has no data rows")],
)
def test_an_empty_file_is_a_clear_error(tmp_path, raw_stroke, served, text, expected):
    """A zero-byte file, blank lines only, or a header alone is refused without a traceback."""
    if text is None:
        text = (_header_and_rows(raw_stroke)[0] + "\n").encode()
    assert expected in _score_text(tmp_path, served, text)


@pytest.mark.parametrize(("sep", "named"), [(":", "colon"), (" ", "space")])
def test_a_wrong_delimiter_shows_the_header_and_the_likely_delimiter(
    tmp_path, raw_stroke, served, sep, named
):
    """A file separated by an unsupported character names the header it read and the delimiter it saw."""
    text = raw_stroke.head(3).drop(columns=["stroke"]).to_csv(index=False, sep=sep)
    error = _score_text(tmp_path, served, text)
    assert "the header was read as one column, 'id" in error and f"looks {named}-separated" in error


@pytest.mark.parametrize(
    ("bad", "line"),
    [(b"Female\xe9", 3), (b"\xff\xfeFemale", 4)],
)
def test_bytes_that_are_not_utf8_name_the_line(tmp_path, raw_stroke, served, bad, line):
    """Latin-1 or UTF-16 bytes in a cell give 'not UTF-8 text' with the line, not a decoding traceback."""
    lines = [row.encode() for row in _header_and_rows(raw_stroke)]
    lines[line - 1] = lines[line - 1].replace(b"Female", bad, 1).replace(b"Male", bad, 1)
    error = _score_text(tmp_path, served, b"\n".join(lines) + b"\n")
    assert "is not UTF-8 text" in error and f"line {line}" in error


def test_a_latin1_header_is_not_utf8(tmp_path, raw_stroke, served):
    """A header that is not UTF-8 is refused the same way, at line 1."""
    lines = _header_and_rows(raw_stroke)
    header = lines[0].replace("gender", "g\xe9nder").encode("latin-1")
    error = _score_text(tmp_path, served, header + b"\n" + "\n".join(lines[1:]).encode())
    assert "is not UTF-8 text: line 1" in error


@pytest.mark.parametrize("change", ["extra", "short"])
def test_a_row_with_the_wrong_number_of_cells_names_its_line(tmp_path, raw_stroke, served, change):
    """A row with more, or fewer, cells than the header is refused, naming the line."""
    lines = _header_and_rows(raw_stroke)
    lines[2] = lines[2] + ",surplus" if change == "extra" else lines[2].rsplit(",", 2)[0]
    error = _score_text(tmp_path, served, "\n".join(lines) + "\n")
    cells = 12 if change == "extra" else 9
    assert f"line 3 has {cells} cells where the header has 11" in error


def test_chunks_continue_line_numbers_and_read_like_pandas(tmp_path, raw_stroke, stroke_spec):
    """pyarrow chunks, put together, hold what pandas reads: same text ids, missing markers, numbers."""
    frame = raw_stroke.head(9).copy()
    frame["id"] = ["000731", "0731", "731", "12345678901234567891", " 731", "A-12 b", "4402.0", "NA", "1e5"]
    frame["bmi"] = frame["bmi"].astype(object)
    frame.loc[[1, 5], "bmi"] = ["N/A", "NaN"]
    frame["ward"] = ["007", "7", "", "x;y", "1.50", "None", "b", "c", "d"]
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    chunks = list(iter_table(path, stroke_spec, 4))
    assert [list(c.index) for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    ours = validate_frame(pd.concat(chunks), stroke_spec, require_target=False)
    pandas = validate_frame(read_table(path, stroke_spec), stroke_spec, require_target=False)
    pd.testing.assert_frame_equal(
        ours.drop(columns=["ward"]), pandas.drop(columns=["ward"]), check_dtype=False
    )
    assert ours["ward"].fillna("").tolist() == ["007", "7", "", "x;y", "1.50", "None", "b", "c", "d"]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_delimiters_and_decimal_commas_stream(tmp_path, raw_stroke, stroke_spec, sep):
    """';' files with decimal commas, tab and pipe files read the same numbers in chunks as whole."""
    path = tmp_path / "f.csv"
    raw_stroke.head(7).to_csv(path, index=False, sep=sep, decimal="," if sep == ";" else ".")
    ours = validate_frame(pd.concat(iter_table(path, stroke_spec, 3)), stroke_spec, require_target=False)
    assert ours["avg_glucose_level"].tolist() == raw_stroke.head(7)["avg_glucose_level"].tolist()
    assert ours["gender"].tolist() == raw_stroke.head(7)["gender"].tolist()


def test_a_quoted_line_break_in_a_pass_through_column_is_kept(tmp_path, raw_stroke, stroke_spec):
    """A free-text column whose quoted cell spans two lines reads as one cell, as pandas reads it."""
    frame = raw_stroke.head(3).copy()
    frame["note"] = ["first line\nsecond line", "plain", 'says "hi", twice']
    frame.to_csv(tmp_path / "notes.csv", index=False)
    ours = pd.concat(iter_table(tmp_path / "notes.csv", stroke_spec, 2))
    assert ours["note"].tolist() == frame["note"].tolist() and len(ours) == 3


def test_a_bom_and_windows_line_ends_read_like_pandas(tmp_path, raw_stroke, stroke_spec):
    """A file saved by Excel (UTF-8 BOM, CRLF line ends) streams to what pandas reads."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + raw_stroke.head(5).to_csv(index=False, lineterminator="\r\n").encode())
    ours = validate_frame(pd.concat(iter_table(path, stroke_spec, 2)), stroke_spec, require_target=False)
    pandas = validate_frame(read_table(path, stroke_spec), stroke_spec, require_target=False)
    pd.testing.assert_frame_equal(ours, pandas, check_dtype=False)
    assert list(ours.columns[:2]) == ["id", "gender"]
