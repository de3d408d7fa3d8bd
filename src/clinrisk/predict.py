"""Batch scoring of a CSV or Parquet file with a model, in chunks of bounded memory.

Output is written to a temporary file and moved into place at the end, so an invalid row
half-way through a file never leaves a partial output behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from clinrisk import outputs
from clinrisk.bundle import ServedModel
from clinrisk.data import iter_table, split_valid_rows, validate_frame
from clinrisk.errors import DataValidationError
from clinrisk.model import RiskModel
from clinrisk.serving.scorer import SKLEARN, Scorer, build_scorer, score_frame

DEFAULT_CHUNK_ROWS = 50_000


@dataclass
class ScoringReport:
    output: str
    rows_scored: int
    rows_rejected: int
    rejects: str | None
    model_version: str
    scoring_path: str = SKLEARN


def choose_scorer(
    model: RiskModel | ServedModel, first_chunk: pd.DataFrame, fast_path: bool
) -> tuple[Scorer, str]:
    """A signed bundle's stored scorer (verified at registration; no check per file); for an
    in-memory RiskModel, the ONNX scorer if it matches scikit-learn on the first chunk, else sklearn."""
    if isinstance(model, ServedModel):
        return model.scorer, model.scorer.path
    scorer, path = build_scorer(model, fast_path=fast_path, verification=first_chunk)
    return scorer, path.active


def score_chunk(
    model: RiskModel | ServedModel, scorer: Scorer, chunk: pd.DataFrame, version: str
) -> pd.DataFrame:
    """Append probability, prediction (at the model's own threshold) and model_version.

    A regression appends `prediction` (the predicted outcome, in the target's units) and
    `model_version` only: it has no probability and no threshold.
    """
    proba = score_frame(scorer, chunk, model.spec)
    out = chunk.copy()
    if model.is_regression:
        out["prediction"] = proba
        out["model_version"] = version
        return out
    out["probability"] = proba
    out["prediction"] = model.decide(proba)
    out["model_version"] = version
    return out


class _TableWriter:
    """Append chunks to a CSV or Parquet file that only appears when committed.

    The partial file is created beside the output under a fresh random name (O_EXCL, by
    `outputs.temporary_beside`) and written through one handle opened with O_NOFOLLOW: a file or
    symlink planted under that name is never followed or overwritten.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp: Path | None = None
        self.parquet = self.path.suffix.lower() in (".parquet", ".pq")
        self._handle = None
        self._writer = None
        self.rows = 0

    def _open(self):
        if self._handle is None:
            self.tmp = outputs.temporary_beside(self.path)
            self._handle = os.fdopen(os.open(self.tmp, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW), "wb")
        return self._handle

    def write(self, frame: pd.DataFrame) -> None:
        try:
            self._append(self._open(), frame)
        except OSError as exc:
            raise outputs.cannot_write(self.path, exc.strerror or str(exc)) from None
        self.rows += len(frame)

    def _append(self, handle, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._writer = self._writer or pq.ParquetWriter(handle, table.schema)
            self._writer.write_table(table)
        else:
            _append_csv(handle, frame, header=not self.rows)

    def _close(self) -> None:
        if self._writer:
            self._writer.close()
            self._writer = None
        if self._handle:
            self._handle.close()
            self._handle = None

    def commit(self) -> None:
        self._open()  # an output with no rows is still a file
        self._close()
        outputs.commit(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        # Closing flushes what is buffered, which fails again on a full disk: the file goes anyway.
        with contextlib.suppress(OSError):
            self._close()
        self._handle, self._writer = None, None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def _append_csv(handle, frame: pd.DataFrame, *, header: bool) -> None:
    """Append rows as CSV with pyarrow's C writer (about 5x pandas' `to_csv`), else with pandas.

    Arrow writes text columns (ids, pass-through columns) exactly as read, numbers in their
    shortest round-trip form and missing values as empty cells, quoting only where needed, as
    pandas does. A column Arrow cannot type (mixed objects) falls back to pandas for that chunk.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        handle.write(frame.to_csv(header=header, index=False).encode())
        return
    options = pacsv.WriteOptions(include_header=header, quoting_style="needed")
    buffer = pa.BufferOutputStream()  # one chunk in memory; the file write below raises plain OSErrors
    pacsv.write_csv(table, buffer, write_options=options)
    handle.write(memoryview(buffer.getvalue()))  # the Arrow buffer itself, not a copy as bytes


def check_paths(input_path: Path, output_path: Path, rejects_path: Path) -> None:
    """Fail before scoring when an output cannot be written or would overwrite the input."""
    outputs.check_writable(output_path, inputs=[input_path])
    outputs.check_writable(rejects_path, inputs=[input_path])
    if Path(output_path).resolve() == Path(rejects_path).resolve():
        raise outputs.cannot_write(Path(rejects_path), "it is also the output file")


def score_file(
    model: RiskModel | ServedModel,
    version: str,
    input_path: Path,
    output_path: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: bool | None = None,
    fast_path: bool = True,
) -> ScoringReport:
    """Score every row of `input_path` into `output_path`; invalid rows raise or go to rejects."""
    spec = model.spec
    rejects_path = Path(rejects_path or Path(output_path).with_suffix(".rejects.csv"))
    check_paths(Path(input_path), Path(output_path), rejects_path)
    output, rejects = _TableWriter(output_path), _TableWriter(rejects_path)
    bar = tqdm(unit="rows", desc="scoring", disable=None if progress is None else not progress)
    scorer, scoring_path = None, SKLEARN
    try:
        for chunk in iter_table(Path(input_path), spec, chunk_rows):
            if skip_invalid:
                chunk, bad = split_valid_rows(chunk, spec)
                if len(bad):
                    rejects.write(bad)
            else:
                chunk = validate_frame(chunk, spec, require_target=False)
            if len(chunk):
                if scorer is None:
                    scorer, scoring_path = choose_scorer(model, chunk, fast_path)
                output.write(score_chunk(model, scorer, chunk, version))
            bar.update(len(chunk))
        if output.rows == 0 and rejects.rows == 0:
            raise DataValidationError(f"{input_path} has no data rows")
        output.commit()
        if rejects.rows:
            rejects.commit()
    except BaseException:
        output.discard()
        rejects.discard()
        raise
    finally:
        bar.close()
    return ScoringReport(
        output=str(output_path),
        rows_scored=output.rows,
        rows_rejected=rejects.rows,
        rejects=str(rejects_path) if rejects.rows else None,
        model_version=version,
        scoring_path=scoring_path,
    )
