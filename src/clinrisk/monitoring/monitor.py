"""The monitoring steps as plain functions, shared by `clinrisk monitor` and the monitor flow.

Current data is a recent window of the prediction log (or a CSV/Parquet file standing in for
it), validated against the spec and scored by the champion; the reference is the sample of
the champion's training data recorded with its version, scored the same way, so drift and
quality always describe one model version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrisk import predlog, registry
from clinrisk.data import read_table, validate_frame
from clinrisk.errors import DataValidationError, NoChampionError
from clinrisk.model import RiskModel
from clinrisk.monitoring import store
from clinrisk.monitoring.decision import recommend_retrain
from clinrisk.monitoring.schema import OUTCOME, PREDICTION, PROBABILITY, floors_for
from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec, load_spec

SHOWN_LINES = 5


@dataclass(frozen=True)
class Window:
    """The rows a report describes: a time range of the prediction log, or a whole file."""

    start: datetime | None
    end: datetime | None
    source: str

    def to_dict(self) -> dict[str, str | None]:
        iso = lambda t: t.astimezone(UTC).isoformat(timespec="seconds") if t else None  # noqa: E731
        return {"start": iso(self.start), "end": iso(self.end), "source": self.source}


def log_window(now: datetime, hours: float) -> Window:
    """The last `hours` of the prediction log, ending now."""
    return Window(now - timedelta(hours=hours), now, "prediction log")


def read_current(settings: Settings, model_name: str, spec: ModelSpec, window: Window, path: Path | None):
    """Rows of the window from the prediction log, or every row of `path` when one is given."""
    if path is None:
        engine = predlog.connect(settings.prediction_log_url)
        try:
            return predlog.read_window(engine, model_name, window.start, window.end), window
        finally:
            engine.dispose()
    frame = read_table(Path(path), spec)
    return frame, file_window(frame, Path(path))


def file_window(frame: pd.DataFrame, path: Path) -> Window:
    """A file's window: the span of its `created_at` column when it has one."""
    if "created_at" in frame.columns:
        times = pd.to_datetime(frame["created_at"], utc=True, errors="coerce").dropna()
        if len(times):
            return Window(times.min().to_pydatetime(), times.max().to_pydatetime(), f"file {path.resolve()}")
    return Window(None, None, f"file {path.resolve()}")


def _outcomes(frame: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """The observed outcome of each row (NaN while unknown), from `outcome` or the spec's target."""
    column = OUTCOME if OUTCOME in frame.columns else spec.target.column
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    values = pd.to_numeric(frame[column], errors="coerce")
    if spec.is_regression:  # a number in the target's units
        bad = frame[column].notna() & ~np.isfinite(values)
    else:
        bad = frame[column].notna() & ~values.isin([0, 1])
    if bad.any():
        lines = ", ".join(str(i + 2) for i in frame.index[bad][:SHOWN_LINES])
        raise DataValidationError(
            f"invalid data:\n  column '{column}': outcome must be 0, 1 or empty "
            f"({int(bad.sum())} rows; first at lines {lines})",
            [
                {
                    "column": column,
                    "message": "outcome must be 0, 1 or empty",
                    "count": int(bad.sum()),
                    "lines": [],
                }
            ],
        )
    return values.astype(float)


def prepare(frame: pd.DataFrame, spec: ModelSpec, model: RiskModel | None) -> pd.DataFrame:
    """Validate rows against the spec (errors name the column) and score them with `model`.

    Without a model, logged `probability` and `prediction` columns are kept when present.
    """
    clean = validate_frame(frame, spec, require_target=False)
    out = clean[spec.feature_names].copy()
    out[OUTCOME] = _outcomes(frame, spec)
    if model is not None:
        scored = model.predict(out)
        if model.is_regression:
            out[PREDICTION] = scored["prediction"]
        else:
            out[PROBABILITY], out[PREDICTION] = scored["probability"], scored["prediction"]
    elif {PROBABILITY, PREDICTION} <= set(frame.columns):
        out[PROBABILITY], out[PREDICTION] = frame[PROBABILITY].astype(float), frame[PREDICTION].astype(float)
    if "model_version" in frame.columns:
        out["model_version"] = frame["model_version"].astype(str)
    return out


def labelled_rows(
    current: pd.DataFrame, reference: pd.DataFrame, min_rows: int
) -> tuple[pd.DataFrame | None, str | None]:
    """The rows whose outcome has arrived, or None with the reason quality cannot be judged."""
    if PREDICTION not in current.columns or PREDICTION not in reference.columns:
        return None, "no model to score the rows with and no logged predictions: quality not judged"
    labelled = current[current[OUTCOME].notna() & current[PREDICTION].notna()]
    if len(labelled) < min_rows:
        return None, f"{len(labelled)} rows with outcomes (at least {min_rows} needed): quality not judged"
    if labelled[OUTCOME].sum() == 0:
        return (
            None,
            f"no positive outcome among {len(labelled)} labelled rows: recall undefined, quality not judged",
        )
    if reference[OUTCOME].nunique() < 2:
        return None, "the reference has no outcomes of both classes: quality not judged"
    return labelled, None


def evaluate(
    settings: Settings,
    spec: ModelSpec,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    version: str,
    window: Window,
    reference_label: str,
    now: datetime | None = None,
):
    """Run the Evidently checks; return the snapshot and the summary (decision included)."""
    from clinrisk.monitoring import reports  # Evidently loads slowly: only when a report is made

    now = now or datetime.now(UTC)
    floors = floors_for(settings, spec)
    labelled, note = labelled_rows(current, reference, settings.min_outcome_rows)
    metadata = {
        "title": f"{spec.name} v{version} monitoring",
        "model": spec.name,
        "model_version": str(version),
        **{f"window_{k}": str(v) for k, v in window.to_dict().items()},
    }
    snapshot = reports.monitoring_snapshot(spec, current, reference, labelled, floors, metadata)
    facts = reports.facts(snapshot)
    decision = recommend_retrain(
        facts.drift_share,
        facts.drifted_columns,
        floors.drift_share,
        facts.recall,
        facts.precision,
        floors.recall,
        floors.precision,
        r2=facts.r2,
        r2_floor=floors.r2,
    )
    summary = {
        "kind": "monitor",
        "model": spec.name,
        "model_version": str(version),
        "created_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "window": window.to_dict(),
        "rows": len(current),
        "labelled_rows": 0 if labelled is None else len(labelled),
        "versions_in_window": sorted(current["model_version"].unique()) if "model_version" in current else [],
        "reference": reference_label,
        "floors": {
            "drift_share": floors.drift_share,
            "recall": floors.recall,
            "precision": floors.precision,
            "r2": floors.r2,
        },
        "drift_detected": facts.drift_share is not None and facts.drift_share >= floors.drift_share,
        "drift_share": facts.drift_share,
        "drifted_columns": facts.drifted_columns,
        "column_drift": facts.column_drift,
        "failed_tests": facts.failed_tests,
        "recall": facts.recall,
        "precision": facts.precision,
        "r2": facts.r2,
        "quality_note": note,
        "retrain": decision.to_dict(),
    }
    return snapshot, summary


def too_few_rows(frame: pd.DataFrame, min_rows: int) -> str | None:
    """Why a window is too small to judge drift, or None when it is large enough."""
    if len(frame) < min_rows:
        return f"only {len(frame)} rows in the current window (at least {min_rows} needed): nothing judged"
    return None


def cli_result(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON line `clinrisk monitor` prints last."""
    result = {
        "drift_detected": summary["drift_detected"],
        "failed_tests": summary["failed_tests"],
        "report": summary["report"],
        "retrain_recommended": summary["retrain"]["recommended"],
        "causes": summary["retrain"]["causes"],
        "drifted_columns": summary["drifted_columns"],
        "model": summary["model"],
        "model_version": summary["model_version"],
        "window": summary["window"],
        "rows": summary["rows"],
    }
    if summary["recall"] is not None:
        result.update(recall=round(summary["recall"], 4), precision=round(summary["precision"], 4))
    if summary.get("r2") is not None:
        result["r2"] = round(summary["r2"], 4)
    return result


def champion_or_none(settings: Settings, model_name: str, required: bool) -> RiskModel | None:
    """The champion; None when there is none and a reference file makes it optional."""
    try:
        return registry.load_alias(settings, model_name, registry.CHAMPION)
    except NoChampionError:
        if required:
            raise
        return None


def reference_for(settings: Settings, model: RiskModel | None, spec: ModelSpec, path: Path | None):
    """The reference rows and a label saying what they are: a given file, or the champion's sample."""
    if path is not None:
        frame = read_table(Path(path), spec)
        return frame, f"file {Path(path).resolve()}, {len(frame)} rows"
    version = model.info["version"]
    frame = registry.load_reference(settings, spec.name, version)
    return frame, f"training sample of version {version}, {len(frame)} rows"


def run_once(
    settings: Settings,
    model_name: str,
    current_path: Path,
    reference_path: Path | None,
    out_dir: Path,
    min_rows: int,
) -> dict[str, Any]:
    """Monitor one file against the champion (or a reference file), with no Prefect server."""
    now = datetime.now(UTC)
    model = champion_or_none(settings, model_name, required=reference_path is None)
    spec = model.spec if model else load_spec(settings.spec_path_for(model_name))
    frame, window = read_current(settings, model_name, spec, None, current_path)
    if reason := too_few_rows(frame, min_rows):
        raise DataValidationError(f"{current_path}: {reason}")
    current = prepare(frame, spec, model)
    raw_reference, label = reference_for(settings, model, spec, reference_path)
    reference = prepare(raw_reference, spec, model)
    version = model.info["version"] if model else "unknown"
    snapshot, summary = evaluate(settings, spec, current, reference, version, window, label, now)
    html = store.publish(out_dir, settings.evidently_workspace, snapshot, summary, now)
    if model is not None:
        store.record_in_registry(settings, spec.name, version, html, summary)
    return summary
