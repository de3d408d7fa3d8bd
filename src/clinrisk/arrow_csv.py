"""Streaming a CSV file with pyarrow's C++ reader, in chunks of bounded memory, for batch scoring.

pandas' `read_csv(chunksize=...)` parses every cell into a Python object column by column;
pyarrow's reader parses a block of bytes at a time into Arrow arrays, so a million-row file is
never held as Python objects. The rules are those of `clinrisk.data.csv_options`:

- every column is read as text first, so that one bad cell never aborts the read;
- typed columns (features, aliases, the target, `measured` ones) take pandas' missing markers
  and the spec's `na_values`; untyped columns (ids, pass-through) keep their text exactly, and
  only an empty cell is missing there;
- a typed numeric column is then parsed to float64 in one vectorised cast (a ';'-separated file
  may use decimal commas); when a cell does not parse, the column stays text and validation
  (`clinrisk.data.inspect_frame`) names the rows, exactly as it does after pandas' reader.

Reading faults become `DataValidationError`s naming the file and the line: a row with more or
fewer cells than the header, bytes that are not UTF-8, an empty file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from clinrisk.errors import DataValidationError
from clinrisk.spec import ModelSpec

# Bytes parsed per block; chunks of rows are cut from the blocks, so memory stays bounded.
BLOCK_BYTES = 4 << 20


def header_names(path: Path, sep: str) -> list[str]:
    """The header's column names, duplicates numbered as pandas does (`a`, `a.1`)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), None)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not header:
        raise DataValidationError(f"{path} is empty: no header and no rows")
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(f"{name}.{count}" if count else name)
    return names


def _not_utf8(path: Path) -> DataValidationError:
    """Name the first line whose bytes are not UTF-8 (read again only on this error path)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataValidationError(
                    f"{path} is not UTF-8 text: line {number} has the byte 0x{line[exc.start]:02x} "
                    "at position {0}; save the file as UTF-8 (CSV UTF-8 in Excel)".format(exc.start + 1)
                )
    return DataValidationError(f"{path} is not UTF-8 text; save the file as UTF-8")


class _RowWidthCheck:
    """pyarrow's invalid-row handler: skip rows of the wrong width, remembering their lines."""

    def __init__(self) -> None:
        self.bad: list[tuple[int | None, int, int]] = []  # (line, cells, expected)

    def __call__(self, row) -> str:
        self.bad.append((row.number, row.actual_columns, row.expected_columns))
        return "skip"

    def raise_if_any(self, path: Path, sep: str, names: list[str]) -> None:
        if not self.bad:
            return
        line, cells, expected = self.bad[0]
        if line is None:  # parsed on several threads, pyarrow knows no line numbers: find it alone
            line = _first_bad_line(path, sep, names)
        where = f"line {line}" if line is not None else "a line"
        more = f" (and {len(self.bad) - 1} more such rows)" if len(self.bad) > 1 else ""
        raise DataValidationError(
            f"{path} is not a readable CSV file: {where} has {cells} cells where the header "
            f"has {expected}{more}"
        )


def _typed(spec: ModelSpec, measured: Iterable[str]) -> tuple[set[str], set[str]]:
    """(typed columns, the categorical ones among them) under every name the file may use."""
    categorical = {n for n, f in spec.features.items() if f.type == "categorical"}
    categorical |= {alias for alias, name in spec.alias_map.items() if name in categorical}
    typed = {*spec.feature_names, *spec.alias_map, spec.target.column, *measured}
    return typed, categorical


def _first_bad_line(path: Path, sep: str, names: list[str]) -> int | None:
    """The line of the first row of the wrong width, from a single-threaded read (error path only)."""
    check = _RowWidthCheck()
    for _ in open_batches(path, sep, names, check, use_threads=False):
        if check.bad:
            break
    return check.bad[0][0] if check.bad else None


def open_batches(path: Path, sep: str, names: list[str], check: _RowWidthCheck, use_threads: bool = True):
    """pyarrow's streaming reader over the data rows, every column as nullable text.

    With `use_threads` (pyarrow's CPU pool, sized by OMP_NUM_THREADS or the cores) it parses
    blocks in parallel, and then the invalid-row handler gets no line numbers.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES, use_threads=use_threads)
    # Quoted cells may hold line breaks (free-text pass-through columns), as pandas allows.
    parse = pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=check)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    return pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)


def _rechunk(batches: Iterator, chunk_rows: int) -> Iterator:
    """Tables of exactly `chunk_rows` rows (the last one shorter) cut from record batches."""
    import pyarrow as pa

    pending, rows = [], 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _column_to_pandas(column, *, typed: bool, numeric: bool, markers, decimal_comma: bool) -> pd.Series:
    """One text column as pandas: markers missing on typed columns, numbers as float64 if all parse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if typed:
        column = pc.if_else(pc.is_in(column, value_set=markers), pa.scalar(None, pa.string()), column)
    if numeric:
        text = pc.replace_substring(column, ",", ".") if decimal_comma else column
        try:
            return pd.Series(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # a cell that is not a number: validation names it
    return pd.Series(column.to_pandas(), dtype=object)


def iter_csv(
    path: Path, spec: ModelSpec, chunk_rows: int, sep: str, measured: Iterable[str] = ()
) -> Iterator[pd.DataFrame]:
    """Yield the file in pandas chunks whose index continues across chunks (row i is line i + 2)."""
    import pyarrow as pa

    names = header_names(path, sep)
    typed, categorical = _typed(spec, measured)
    markers = pa.array(sorted(STR_NA_VALUES | set(spec.data.na_values)), pa.string())
    check = _RowWidthCheck()
    start = 0
    try:
        for table in _rechunk(open_batches(path, sep, names, check), chunk_rows):
            check.raise_if_any(path, sep, names)
            columns = {
                name: _column_to_pandas(
                    table.column(name).combine_chunks(),
                    typed=name in typed,
                    numeric=name in typed and name not in categorical,
                    markers=markers,
                    decimal_comma=sep == ";",
                )
                for name in names
            }
            frame = pd.DataFrame(columns)
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield frame
        check.raise_if_any(path, sep, names)
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise _not_utf8(path) from None
        raise DataValidationError(f"{path} is not a readable CSV file: {exc}") from None
