"""Scorers: the probability of the positive class from validated rows, on the lean path or scikit-learn's.

A request's time with scikit-learn is dominated by per-call DataFrame preprocessing
(milliseconds), while the model's arithmetic takes microseconds. `build_scorer` converts a
model to ONNX, checks it against scikit-learn on a whole data file and keeps it only when
every probability agrees within `TOLERANCE`; otherwise scikit-learn scores, and the reason
is kept for `/model`. Both scorers take plain column arrays, so batch scoring can use them too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from clinrisk.spec import ModelSpec
from clinrisk.wording import count_of

if TYPE_CHECKING:  # scikit-learn stays out of the service's start-up
    from clinrisk.model import RiskModel

log = logging.getLogger(__name__)

TOLERANCE = 1e-5
ONE_RECORD_CHECK_ROWS = 200  # rows also scored one at a time when a lean scorer is verified
ONNX = "onnx"
SKLEARN = "sklearn"


class Scorer(Protocol):
    path: str

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray: ...

    def proba_one(self, record: Mapping[str, Any]) -> float: ...


@dataclass(frozen=True)
class ScoringPath:
    """Which scorer is active and why; shown by `/model`."""

    active: str
    reason: str
    max_abs_diff: float | None = None
    verified_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OneRowOfABatch:
    """A scorer whose one-record path is its batch path (`proba`) on a batch of one row."""

    spec: ModelSpec

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def proba_one(self, record: Mapping[str, Any]) -> float:
        """`proba` for one validated record."""
        return float(self.proba(columns_from_records([record], self.spec))[0])


class SklearnScorer(OneRowOfABatch):
    """The reference path: the fitted scikit-learn pipeline on a DataFrame."""

    path = SKLEARN

    def __init__(self, model: RiskModel):
        self._model = model
        self.spec = model.spec

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities; for a regression, the predicted values (the model's `scores`)."""
        return self._model.scores(pd.DataFrame(columns))


class CalibratedScorer:
    """A lean scorer of the raw pipeline followed by the model's own calibration map."""

    def __init__(self, raw: Scorer, model: RiskModel):
        self._raw = raw
        self._model = model
        self.path = raw.path

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return self._model.calibrate(self._raw.proba(columns))

    def proba_one(self, record: Mapping[str, Any]) -> float:
        return self._model.calibrate_one(self._raw.proba_one(record))


def probabilities_of_records(
    scorer: Scorer, records: Sequence[Mapping[str, Any]], spec: ModelSpec
) -> list[float]:
    """One probability (a regression: predicted value) per validated record, as Python floats.

    A single record, the API's usual request, takes the scorer's scalar path (`proba_one`).
    """
    if len(records) == 1:
        return [scorer.proba_one(records[0])]
    return scorer.proba(columns_from_records(records, spec)).tolist()


def columns_from_records(records: Sequence[Mapping[str, Any]], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Column arrays from validated records: float64 numbers (None as NaN), object strings."""
    columns = {}
    for name, feature in spec.features.items():
        values = [record.get(name) for record in records]
        if feature.type == "categorical":
            columns[name] = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return columns


def columns_from_frame(frame: pd.DataFrame, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Column arrays from a frame already checked by `clinrisk.data.validate_frame`."""
    columns = {}
    for name, feature in spec.features.items():
        if feature.type == "categorical":
            columns[name] = frame[name].astype(object).where(frame[name].notna(), "").to_numpy(dtype=object)
        else:
            columns[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return columns


def score_frame(scorer: Scorer, frame: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Probabilities for a validated frame (the batch-scoring entry point)."""
    return scorer.proba(columns_from_frame(frame, spec))


def max_abs_difference(lean: Scorer, reference: Scorer, frame: pd.DataFrame, spec: ModelSpec) -> float:
    """The largest |Δ probability| between two scorers over every row of a frame, and between the
    lean scorer's one-record path (`proba_one`) and its batch path on the first rows."""
    columns = columns_from_frame(frame, spec)
    batch = lean.proba(columns)
    difference = float(np.max(np.abs(batch - reference.proba(columns))))
    singles = [
        lean.proba_one({name: values[row] for name, values in columns.items()})
        for row in range(min(len(frame), ONE_RECORD_CHECK_ROWS))
    ]
    if singles:
        difference = max(difference, float(np.max(np.abs(np.array(singles) - batch[: len(singles)]))))
    return difference


def build_scorer(
    model: RiskModel, *, fast_path: bool, verification: pd.DataFrame | None, missing_reason: str = ""
) -> tuple[Scorer, ScoringPath]:
    """The ONNX scorer when it converts and matches scikit-learn on `verification`, else scikit-learn."""
    reference = SklearnScorer(model)
    if not fast_path:
        return reference, ScoringPath(SKLEARN, "the fast path is turned off (CLINRISK_FAST_PATH=false)")
    if verification is None or verification.empty:
        return reference, ScoringPath(SKLEARN, f"no data to verify the ONNX scorer against: {missing_reason}")
    from clinrisk.serving.onnx_scorer import OnnxScorer

    try:
        lean = CalibratedScorer(OnnxScorer.from_pipeline(model.pipeline, model.spec), model)
        diff = max_abs_difference(lean, reference, verification, model.spec)
    except Exception as exc:  # skl2onnx and onnxruntime raise many types for unsupported models
        log.warning("ONNX conversion failed, scoring with scikit-learn: %s", exc)
        return reference, ScoringPath(
            SKLEARN, f"ONNX conversion failed: {type(exc).__name__}: {str(exc)[:200]}"
        )
    rows = len(verification)
    if not diff <= TOLERANCE:
        reason = f"ONNX differs from scikit-learn by {diff:.3g} > {TOLERANCE:g} on {count_of(rows, 'row')}"
        log.warning("%s; scoring with scikit-learn", reason)
        return reference, ScoringPath(SKLEARN, reason, diff, rows)
    return lean, ScoringPath(ONNX, f"verified against scikit-learn on {count_of(rows, 'row')}", diff, rows)


def load_verification_data(spec: ModelSpec) -> tuple[pd.DataFrame | None, str]:
    """The spec's own data file, validated, to check a lean scorer against; else None and why."""
    from clinrisk.data import read_table, validate_frame
    from clinrisk.errors import DataValidationError
    from clinrisk.settings import PROJECT_ROOT

    path = Path(spec.data.path)
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / spec.data.path
    if not path.exists():
        return None, f"{spec.data.path} not found"
    try:
        return validate_frame(read_table(path, spec), spec, require_target=False), str(path)
    except DataValidationError as exc:
        return None, f"{path} is not valid: {exc}"
