"""Batch scoring of a CSV or Parquet file with a model, in chunks of bounded memory.

Output is written to a temporary file and moved into place at the end, so an invalid row
half-way through a file never leaves a partial output behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

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


def choose_scorer(model: RiskModel, first_chunk: pd.DataFrame, fast_path: bool) -> tuple[Scorer, str]:
    """The lean ONNX scorer if it matches scikit-learn on every row of the first chunk, else sklearn."""
    scorer, path = build_scorer(model, fast_path=fast_path, verification=first_chunk)
    return scorer, path.active


def score_chunk(model: RiskModel, scorer: Scorer, chunk: pd.DataFrame, version: str) -> pd.DataFrame:
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
    """Append chunks to a CSV or Parquet file that only appears when closed successfully."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.parquet = self.path.suffix.lower() in (".parquet", ".pq")
        self._writer = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._writer = self._writer or pq.ParquetWriter(self.tmp, table.schema)
            self._writer.write_table(table)
        else:
            frame.to_csv(self.tmp, mode="a" if self.rows else "w", header=not self.rows, index=False)
        self.rows += len(frame)

    def commit(self) -> None:
        if self._writer:
            self._writer.close()
        if self.rows == 0 and not self.tmp.exists():
            pd.DataFrame().to_csv(self.tmp, index=False)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._writer:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def score_file(
    model: RiskModel,
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
