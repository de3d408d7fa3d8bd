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
from clinrisk.gate import Estimate, precision_estimate, recall_estimate, significantly_below
from clinrisk.model import RiskModel
from clinrisk.monitoring import store
from clinrisk.monitoring.decision import recommend_retrain
from clinrisk.monitoring.schema import OUTCOME, PREDICTION, PROBABILITY, Floors, floors_for
from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec, load_spec
from clinrisk.wording import count_of, rows_at

SHOWN_LINES = 5
# Numbers a monitored file may carry beside the features: read with the usual missing markers.
LOGGED_COLUMNS = (OUTCOME, PROBABILITY, PREDICTION)


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


# Marks the rows whose prediction was made in the window (drift is judged on those only); rows
# without it are older predictions whose outcome arrived in the window (quality counts them too).
IN_WINDOW = "in_window"


def read_current(settings: Settings, model_name: str, spec: ModelSpec, window: Window, path: Path | None):
    """Rows of the window from the prediction log, or every row of `path` when one is given.

    From the log: the predictions made in the window, plus older predictions whose outcome
    arrived in it, so that quality counts every outcome that arrived (a stroke is reported
    weeks after the prediction).
    """
    if path is None:
        engine = predlog.connect(settings.prediction_log_url)
        try:
            made = predlog.read_window(engine, model_name, window.start, window.end)
            arrived = read_arrived(engine, model_name, window.start, window.end)
        finally:
            engine.dispose()
        return with_arrived_outcomes(made, arrived), window
    frame = read_table(Path(path), spec, measured=LOGGED_COLUMNS)
    return frame, file_window(frame, Path(path))


def read_arrived(engine, model_name: str, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """Logged predictions (features, decision, latest outcome) whose outcome arrived in [since, until)."""
    import json

    from sqlalchemy import select

    feedback, logged = predlog.feedback, predlog.predictions
    query = (
        select(logged, feedback.c.outcome)
        .join(feedback, feedback.c.prediction_id == logged.c.prediction_id)
        .where(logged.c.model_name == model_name)
        .order_by(feedback.c.id)
    )
    if since is not None:
        query = query.where(feedback.c.received_at >= since)
    if until is not None:
        query = query.where(feedback.c.received_at < until)
    with engine.connect() as conn:
        rows = pd.DataFrame(conn.execute(query).mappings().all())
    if rows.empty:
        return rows
    rows = rows.drop_duplicates("prediction_id", keep="last").reset_index(drop=True)  # latest outcome wins
    features = pd.DataFrame([json.loads(f) for f in rows.pop("features")], index=rows.index)
    return pd.concat([features, rows], axis=1)


def with_arrived_outcomes(made: pd.DataFrame, arrived: pd.DataFrame) -> pd.DataFrame:
    """The window's predictions flagged `in_window`, then the older ones whose outcome arrived."""
    made = made.assign(**{IN_WINDOW: True})
    if arrived.empty:
        return made
    older = arrived[~arrived["prediction_id"].isin(made.get("prediction_id", pd.Series(dtype=str)))]
    return pd.concat([made, older.assign(**{IN_WINDOW: False})], ignore_index=True)


def drift_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows drift is judged on: predictions made in the window (every row of a file)."""
    return frame[frame[IN_WINDOW].astype(bool)] if IN_WINDOW in frame.columns else frame


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
        rule = "outcome must be a finite number or empty"
    else:
        bad = frame[column].notna() & ~values.isin([0, 1])
        rule = "outcome must be 0, 1 or empty"
    if bad.any():
        lines = [int(i) + 2 for i in frame.index[bad][:SHOWN_LINES]]
        raise DataValidationError(
            f"invalid data:\n  column '{column}': {rule} ({rows_at(int(bad.sum()), lines)})",
            [
                {
                    "column": column,
                    "message": rule,
                    "count": int(bad.sum()),
                    "lines": [],
                }
            ],
        )
    return values.astype(float)


def prepare(frame: pd.DataFrame, spec: ModelSpec, model: RiskModel | None) -> pd.DataFrame:
    """Validate rows against the spec (errors name the column) and attach each row's decision.

    A row logged with its `probability` and `prediction` keeps them: quality is judged on the
    decisions that were served, at the threshold of the version that served them. Rows without
    them (a reference sample, a plain file) are scored with `model`, at its own threshold.
    """
    clean = validate_frame(frame, spec, require_target=False)
    out = clean[spec.feature_names].copy()
    out[OUTCOME] = _outcomes(frame, spec)
    out[PROBABILITY], out[PREDICTION] = np.nan, np.nan
    if {PROBABILITY, PREDICTION} <= set(frame.columns):
        out[PROBABILITY] = pd.to_numeric(frame[PROBABILITY], errors="coerce").astype(float)
        out[PREDICTION] = pd.to_numeric(frame[PREDICTION], errors="coerce").astype(float)
    elif spec.is_regression and PREDICTION in frame.columns:  # a regression logs no probability
        out[PREDICTION] = pd.to_numeric(frame[PREDICTION], errors="coerce").astype(float)
    unscored = out[PREDICTION].isna()
    if model is not None and unscored.any():
        scored = model.predict(out.loc[unscored])
        if not spec.is_regression:
            out.loc[unscored, PROBABILITY] = scored["probability"]
        out.loc[unscored, PREDICTION] = scored["prediction"].astype(float)
    if out[PREDICTION].isna().all():
        out = out.drop(columns=[PROBABILITY, PREDICTION])
    if "model_version" in frame.columns:
        out["model_version"] = frame["model_version"].astype(str)
    if IN_WINDOW in frame.columns:
        out[IN_WINDOW] = frame[IN_WINDOW].astype(bool)
    return out


def labelled_rows(
    current: pd.DataFrame, reference: pd.DataFrame, min_rows: int, regression: bool = False
) -> tuple[pd.DataFrame | None, str | None]:
    """The rows whose outcome has arrived, or None with the reason quality cannot be judged.

    A regression's outcomes and predictions are numbers (target units); a classification's are 0/1.
    """
    if PREDICTION not in current.columns or PREDICTION not in reference.columns:
        return None, "no model to score the rows with and no logged predictions: quality not judged"
    kind = float if regression else int
    labelled = current[current[OUTCOME].notna() & current[PREDICTION].notna()].astype(
        {OUTCOME: kind, PREDICTION: kind}
    )
    if len(labelled) < min_rows:
        found = count_of(len(labelled), "row")
        return None, f"{found} with outcomes (at least {min_rows} needed): quality not judged"
    if regression:
        if labelled[OUTCOME].nunique() < 2 or reference[OUTCOME].notna().sum() < 2:
            return None, "the outcomes do not vary (or the reference has none): R² undefined, not judged"
        return labelled, None
    if labelled[OUTCOME].sum() == 0:
        return (
            None,
            f"no positive outcome among {len(labelled)} labelled rows: recall undefined, quality not judged",
        )
    if reference[OUTCOME].nunique() < 2:
        return None, "the reference has no outcomes of both classes: quality not judged"
    return labelled, None


def quality_estimates(labelled: pd.DataFrame | None, confidence: float) -> dict[str, Estimate] | None:
    """Recall and precision of the decisions on the rows whose outcome arrived, with intervals."""
    if labelled is None:
        return None
    outcomes, decisions = labelled[OUTCOME].to_numpy(), labelled[PREDICTION].to_numpy()
    return {
        "recall": recall_estimate(outcomes, decisions, confidence),
        "precision": precision_estimate(outcomes, decisions, confidence),
    }


def quality_causes(quality: dict[str, Estimate] | None, floors: Floors) -> list[str]:
    """A cause for each rate significantly below its floor (its whole interval under it).

    A point estimate under the floor is not enough: on 50 outcomes precision moves by several
    points from week to week, and a false "below the floor" alarm would start a needless retrain.
    """
    if quality is None:
        return []
    limits = {"recall": floors.recall, "precision": floors.precision}
    return [
        f"{name} {found.text()} is significantly below the floor {limits[name]:g}"
        for name, found in quality.items()
        if significantly_below(found, limits[name])
    ]


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
    labelled, note = labelled_rows(current, reference, settings.min_outcome_rows, spec.is_regression)
    metadata = {
        "title": f"{spec.name} v{version} monitoring",
        "model": spec.name,
        "model_version": str(version),
        **{f"window_{k}": str(v) for k, v in window.to_dict().items()},
    }
    snapshot = reports.monitoring_snapshot(spec, drift_rows(current), reference, labelled, floors, metadata)
    facts = reports.facts(snapshot)
    health = reports.column_health(spec, current, reference)
    quality = None if spec.is_regression else quality_estimates(labelled, 1 - spec.gate.alpha)
    decision = recommend_retrain(
        facts.drift_share, facts.drifted_columns, floors.drift_share, r2=facts.r2, r2_floor=floors.r2
    )
    decision.causes += quality_causes(quality, floors)
    decision.recommended = bool(decision.causes)
    summary = {
        "kind": "monitor",
        "model": spec.name,
        "model_version": str(version),
        "created_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "window": window.to_dict(),
        "rows": len(drift_rows(current)),
        # Outcomes that arrived in the window, whenever their prediction was made.
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
        "column_health": health,
        "flagged_columns": [c for c, h in health.items() if h["flagged"]],
        "failed_tests": facts.failed_tests,
        "recall": quality["recall"].value if quality else None,
        "precision": quality["precision"].value if quality else None,
        # Wilson estimates of the outcomes in the window, on the decisions that were served.
        "quality": {k: e.to_dict() for k, e in quality.items()} if quality else None,
        "r2": facts.r2,
        "quality_note": note,
        "retrain": decision.to_dict(),
        "slices": outcome_slices(spec, labelled),
    }
    return snapshot, summary


def outcome_slices(spec: ModelSpec, labelled: pd.DataFrame | None) -> list[dict] | None:
    """Fairness slices of the rows whose outcome has arrived (None when quality is not judged)."""
    from clinrisk.fairness import slice_report

    if labelled is None or spec.is_regression:
        return None
    return slice_report(spec, labelled, labelled[OUTCOME].astype(int), labelled[PREDICTION].astype(int))


def too_few_rows(frame: pd.DataFrame, min_rows: int) -> str | None:
    """Why a window is too small to judge drift, or None when it is large enough."""
    rows = len(drift_rows(frame))
    if rows < min_rows:
        found = count_of(rows, "row")
        return f"only {found} in the current window (at least {min_rows} needed): nothing judged"
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
        result["quality"] = summary.get("quality")
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
        frame = read_table(Path(path), spec, measured=LOGGED_COLUMNS)
        return frame, f"file {Path(path).resolve()}, {count_of(len(frame), 'row')}"
    version = model.info["version"]
    frame = registry.load_reference(settings, spec.name, version)
    return frame, f"training sample of version {version}, {count_of(len(frame), 'row')}"


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
