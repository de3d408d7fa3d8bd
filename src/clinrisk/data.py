"""Reading and validating training and scoring files against a model spec.

Every check is vectorised per column so that the same code validates a 5k-row training file
and a million-row scoring file. Problems name the column and the first offending rows by
their line number in the file (the header is line 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES  # pandas' own default missing markers

from clinrisk.errors import DataValidationError
from clinrisk.spec import ModelSpec, file_sha256
from clinrisk.wording import count_of, rows_at

SHOWN_ROWS = 5


# Delimiters recognised in a CSV header; European Excel writes ';' (with decimal commas).
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", ":": "colon", " ": "space"}


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _header_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        return handle.readline()


def sniff_delimiter(header: str) -> str:
    """The one of `DELIMITERS` that occurs most often in the header line (comma on a tie or none)."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def typed_columns(spec: ModelSpec) -> set[str]:
    """The columns the spec gives a type to: features, their aliases and the target."""
    return {*spec.feature_names, *spec.alias_map, spec.target.column}


def csv_options(path: Path, spec: ModelSpec, measured: Iterable[str] = ()) -> dict:
    """`pandas.read_csv` arguments for one file: its delimiter, and untyped columns kept as text.

    Columns the spec does not type (the id, any pass-through column) are read exactly as text,
    so `000731` stays `000731` and `12345678901234567891` keeps every digit; only an empty cell
    is missing there. Typed columns, and the `measured` ones (e.g. a logged outcome), take pandas'
    missing markers plus the spec's `na_values`.
    """
    sep = sniff_delimiter(_header_line(path))
    header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig").columns
    typed = typed_columns(spec) | set(measured)
    markers = sorted(STR_NA_VALUES | set(spec.data.na_values))
    return {
        "sep": sep,
        "decimal": "," if sep == ";" else ".",
        "encoding": "utf-8-sig",
        "dtype": {c: str for c in header if c not in typed},
        "na_values": {c: markers if c in typed else [""] for c in header},
        "keep_default_na": False,
    }


def _read_csv(path: Path, spec: ModelSpec, measured: Iterable[str] = (), **kwargs):
    try:
        return pd.read_csv(path, **csv_options(path, spec, measured), **kwargs)
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"{path} is empty: no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataValidationError(f"{path} is not a readable CSV file: {exc}") from None


def existing_file(path: Path | str) -> Path:
    """`path` as a Path; raises DataValidationError when it is missing or a folder."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"file not found: {path}")
    if path.is_dir():
        raise DataValidationError(f"{path} is a folder, not a file")
    return path


def read_table(path: Path, spec: ModelSpec, measured: Iterable[str] = ()) -> pd.DataFrame:
    """Read a whole CSV or Parquet file, with the spec's missing-value markers (see `csv_options`)."""
    path = existing_file(path)
    if _is_parquet(path):
        return pd.read_parquet(path)
    return _read_csv(path, spec, measured)


def iter_table(path: Path, spec: ModelSpec, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Yield a file in chunks whose index continues across chunks (row i is line i + 2).

    Both formats are streamed by pyarrow (CSV by `clinrisk.arrow_csv`, with the rules of
    `csv_options`), so memory is bounded by the chunk, not the file.
    """
    path = existing_file(path)
    if _is_parquet(path):
        import pyarrow.parquet as pq

        start = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield frame
        return
    from clinrisk.arrow_csv import iter_csv

    yield from iter_csv(path, spec, chunk_rows, sniff_delimiter(_header_line(path)))


def load_training_data(spec: ModelSpec, path: Path, expected_sha256: str | None = None) -> pd.DataFrame:
    """Load and validate a training file; when a checksum is expected, the file must match it."""
    path = Path(path)
    if expected_sha256 and path.exists():
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise DataValidationError(
                f"{path} has sha256 {actual}, but the spec declares {expected_sha256}: "
                "raw data must not change; add a new file instead"
            )
    frame = validate_frame(read_table(path, spec), spec, require_target=True)
    check_learnable(frame, spec)
    return frame


# A feature missing in more than this share of training rows trains, with a warning on the run.
MOSTLY_MISSING_SHARE = 0.5


def _unlearnable(values: pd.Series) -> str | None:
    observed = values.dropna()
    if observed.empty:
        return f"no observed value in {count_of(len(values), 'row')}"
    if observed.nunique() == 1:
        value = observed.iloc[0]
        return f"a single value ({getattr(value, 'item', lambda: value)()!r}) in every row where it is given"
    return None


def check_learnable(frame: pd.DataFrame, spec: ModelSpec) -> None:
    """Raise naming every feature with no observed value or a single one: a model cannot learn from it.

    scikit-learn's imputer drops such a column with only a warning, and the model then silently
    ignores a feature the spec promises it uses (and its ONNX export no longer matches).
    """
    problems = [(name, why) for name in spec.feature_names if (why := _unlearnable(frame[name]))]
    if problems:
        lines = [f"  feature '{name}': {why}" for name, why in problems]
        raise DataValidationError(
            "cannot train: nothing to learn from\n" + "\n".join(lines),
            [{"column": name, "message": why, "count": len(frame), "lines": []} for name, why in problems],
        )


def data_warnings(frame: pd.DataFrame, spec: ModelSpec) -> list[str]:
    """One line per feature missing in most training rows (recorded on the training run)."""
    warnings = []
    for name in spec.feature_names:
        missing = int(frame[name].isna().sum())
        if missing > MOSTLY_MISSING_SHARE * len(frame):
            warnings.append(
                f"feature '{name}' is missing in {missing / len(frame):.0%} of training rows "
                f"({missing} of {len(frame)})"
            )
    return warnings


def canonical_columns(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Rename accepted aliases (e.g. residence_type) and data column names (`%Red Pixel`) to feature names."""
    renames = {a: n for a, n in spec.alias_map.items() if a in frame.columns and n not in frame.columns}
    return frame.rename(columns=renames) if renames else frame


def _line_numbers(index: pd.Index) -> list[int]:
    return [int(i) + 2 for i in index[:SHOWN_ROWS]]


def _problem(column: str, message: str, bad: pd.Series) -> dict:
    """Describe one column's problem, naming how many rows and the first few lines."""
    rows = bad[bad].index
    return {"column": column, "message": message, "count": len(rows), "lines": _line_numbers(rows)}


def _both_names(feature: str, spec: ModelSpec) -> str:
    """`red_pixel_pct (or '%Red Pixel')` when the data calls a feature otherwise."""
    column = spec.features[feature].column if feature in spec.features else None
    return f"{feature} (or '{column}')" if column and column != feature else feature


def _check_structure(frame: pd.DataFrame, spec: ModelSpec, require_target: bool) -> None:
    if frame.empty:
        raise DataValidationError("the file has no data rows")
    needed = spec.feature_names + ([spec.target.column] if require_target else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        named = [_both_names(c, spec) for c in missing]
        raise DataValidationError(
            f"missing column{'s' * (len(missing) > 1)}: {', '.join(named)}{_header_hint(frame.columns)}",
            [{"column": c, "message": "missing column", "count": 0, "lines": []} for c in missing],
        )


def _header_hint(columns: pd.Index) -> str:
    """When the header was read as one column, say what was read and the delimiter it likely uses."""
    if len(columns) != 1:
        return ""
    header = str(columns[0])
    counts = {d: header.count(d) for d in DELIMITER_NAMES}
    likely = max(counts, key=counts.get)
    hint = f"; the header was read as one column, {header[:80]!r}"
    if counts[likely]:
        hint += (
            f": the file looks {DELIMITER_NAMES[likely]}-separated; save it separated by "
            "comma, semicolon, tab or |"
        )
    return hint


def _numeric_checks(frame: pd.DataFrame, name: str, feature) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    """Coerce one numeric column; return it with the (message, bad-row mask) pairs found."""
    raw = frame[name]
    if feature.missing_values:
        raw = raw.mask(pd.to_numeric(raw, errors="coerce").isin(feature.missing_values))
    values = pd.to_numeric(raw, errors="coerce")
    checks = [("non-numeric value", raw.notna() & values.isna())]
    if not feature.nullable:
        checks.append(("missing value", raw.isna()))
    if feature.type == "binary":
        checks.append(("value must be 0 or 1", values.notna() & ~values.isin([0, 1])))
    else:
        checks.append(("non-finite value", values.notna() & ~np.isfinite(values)))
        if feature.min is not None:
            checks.append((f"value below minimum {feature.min:g}", values < feature.min))
        if feature.max is not None:
            checks.append((f"value above maximum {feature.max:g}", values > feature.max))
    return values.astype(float), checks


def _categorical_checks(
    frame: pd.DataFrame, name: str, feature
) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    raw = frame[name]
    known = raw.isin(feature.categories)
    allowed = ", ".join(feature.categories)
    unknown = f"unknown category (allowed: {allowed})"
    if known.all():  # the usual chunk: nothing to strip, nothing unknown, nothing missing
        none = pd.Series(False, index=raw.index)
        return raw.astype(object), [(unknown, none)] + ([] if feature.nullable else [("missing value", none)])
    values = _stripped_text(raw, known)
    checks = [(unknown, values.notna() & ~values.isin(feature.categories))]
    if not feature.nullable:
        checks.append(("missing value", values.isna()))
    return values.astype(object), checks


def _stripped_text(raw: pd.Series, known: pd.Series) -> pd.Series:
    """The column as stripped text, missing as pd.NA (as `astype("string").str.strip()` gives).

    Cells that already equal a category (`known`), almost all of them in practice, are kept as
    they are: only the others go through pandas' string methods, which cost a Python call per cell.
    """
    values = raw.astype(object).copy()
    others = ~known
    values[others] = raw[others].astype("string").str.strip().astype(object)
    return values


def _target_checks(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    if spec.is_regression:
        return _numeric_target_checks(frame, spec)
    raw = frame[spec.target.column]
    labels = {str(spec.target.positive): 1, str(spec.target.negative): 0}
    as_text = raw.map(lambda v: str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v))
    encoded = as_text.map(labels)
    bad = raw.notna() & encoded.isna()
    allowed = f"{spec.target.negative} or {spec.target.positive}"
    return encoded, [("missing target", raw.isna()), (f"target must be binary ({allowed})", bad)]


def _numeric_target_checks(
    frame: pd.DataFrame, spec: ModelSpec
) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    """A regression's outcome is a finite number, in the target's own units."""
    raw = frame[spec.target.column]
    values = pd.to_numeric(raw, errors="coerce")
    return values.astype(float), [
        ("missing target", raw.isna()),
        ("target must be a number", raw.notna() & values.isna()),
        ("target must be finite", values.notna() & ~np.isfinite(values)),
    ]


def _duplicate_id_check(frame: pd.DataFrame, spec: ModelSpec) -> list[tuple[str, str, pd.Series]]:
    if spec.id_column and spec.id_column in frame.columns:
        duplicated = frame[spec.id_column].duplicated(keep=False) & frame[spec.id_column].notna()
        return [(spec.id_column, "duplicate id", duplicated)]
    return []


def inspect_frame(
    frame: pd.DataFrame, spec: ModelSpec, require_target: bool
) -> tuple[pd.DataFrame, list[dict], pd.Series]:
    """Check every column; return the coerced frame, per-column problems and per-row reasons."""
    frame = canonical_columns(frame, spec)
    _check_structure(frame, spec, require_target)
    clean = frame.copy()
    findings: list[tuple[str, str, pd.Series]] = []
    for name, feature in spec.features.items():
        check = _categorical_checks if feature.type == "categorical" else _numeric_checks
        clean[name], checks = check(frame, name, feature)
        findings += [(name, message, mask) for message, mask in checks]
    if require_target:
        clean[spec.target.column], checks = _target_checks(frame, spec)
        findings += [(spec.target.column, message, mask) for message, mask in checks]
    findings += _duplicate_id_check(frame, spec)
    problems = [_problem(col, msg, mask) for col, msg, mask in findings if mask.any()]
    return clean, problems, _row_reasons(frame.index, findings)


def _row_reasons(index: pd.Index, findings: list[tuple[str, str, pd.Series]]) -> pd.Series:
    """One text per row listing everything wrong with it ('' for a valid row)."""
    reasons = pd.Series("", index=index, dtype=object)
    if not any(mask.any() for _, _, mask in findings):
        return reasons
    for column, message, mask in findings:
        if mask.any():
            reasons[mask] = reasons[mask] + f"{column}: {message}; "
    return reasons.str.rstrip("; ")


def format_problems(problems: list[dict]) -> str:
    lines = []
    for p in problems:
        where = f" ({rows_at(p['count'], p['lines'])})" if p["lines"] else ""
        lines.append(f"  column '{p['column']}': {p['message']}{where}")
    return "\n".join(lines)


def validate_frame(
    frame: pd.DataFrame, spec: ModelSpec, require_target: bool, require_both_classes: bool = True
) -> pd.DataFrame:
    """Return the coerced frame, or raise naming every offending column and its first rows.

    A batch of new labels may hold one class only (`require_both_classes=False`); a training set may not.
    """
    clean, problems, _ = inspect_frame(frame, spec, require_target)
    if problems:
        raise DataValidationError("invalid data:\n" + format_problems(problems), problems)
    if require_target and require_both_classes and clean[spec.target.column].nunique() < 2:
        what = "a single value" if spec.is_regression else "a single class"
        raise DataValidationError(f"target '{spec.target.column}' has {what}: nothing to learn")
    if require_target and not spec.is_regression:
        clean[spec.target.column] = clean[spec.target.column].astype(int)
    return _with_final_types(clean, spec)


def _with_final_types(clean: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Once only valid rows remain, binary columns become integers (as the signature says)."""
    for name, feature in spec.features.items():
        if feature.type == "binary" and not feature.nullable:
            clean[name] = clean[name].astype("int64")
    return clean


def split_valid_rows(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Separate scoring rows into valid ones and rejects carrying a `reason` column."""
    clean, _, reasons = inspect_frame(frame, spec, require_target=False)
    bad = reasons != ""
    rejects = frame.loc[bad].copy()
    rejects.insert(0, "line", rejects.index + 2)
    rejects["reason"] = reasons[bad]
    return _with_final_types(clean.loc[~bad].copy(), spec), rejects
