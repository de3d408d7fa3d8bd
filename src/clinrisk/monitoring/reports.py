"""Everything that talks to Evidently: column mapping, reports, their results and the workspace.

Evidently replaced its whole API in 0.7 (Report/TestSuite became one Report with tests); this is
the only module that imports it, so the next upgrade touches one file. The column mapping is
derived from the model spec, so a new clinical model needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
from evidently.core.report import Snapshot
from evidently.metrics import DriftedColumnsCount
from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset, RegressionPreset
from evidently.tests import gte, lt
from evidently.ui.workspace import Workspace

from clinrisk import outputs
from clinrisk.gate import lowest_not_below
from clinrisk.monitoring.schema import OUTCOME, PREDICTION, Floors
from clinrisk.spec import ModelSpec

# Distance-based methods for every sample size, so a column's verdict does not flip between a
# p-value test and a distance when the window grows past Evidently's size cut-off.
DRIFT_METHODS = {"num_method": "wasserstein", "cat_method": "jensenshannon", "threshold": 0.1}


@dataclass
class ReportFacts:
    """The numbers the decision and the summaries need, read back from a snapshot."""

    drift_share: float | None = None
    column_drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_tests: list[str] = field(default_factory=list)
    recall: float | None = None
    precision: float | None = None
    r2: float | None = None

    @property
    def drifted_columns(self) -> dict[str, float]:
        return {c: d["score"] for c, d in self.column_drift.items() if d["drifted"]}


def _values_note(count: int, where: str) -> str | None:
    if count == 0:
        return f"no value in the {where}"
    if count == 1:
        return f"a single value in the {where}"
    return None


def _drift_note(values: pd.Series, reference: pd.Series, numeric: bool) -> str | None:
    """Why a column's drift cannot be computed, or None when it can.

    Evidently raises on an empty column, and its normed Wasserstein distance divides by the
    reference's spread, so a constant numeric reference gives a meaningless score.
    """
    note = _values_note(int(values.notna().sum()), "current window") or _values_note(
        int(reference.notna().sum()), "reference"
    )
    if note is None and numeric and reference.dropna().nunique() == 1:
        note = f"the reference is constant ({reference.dropna().iloc[0]:g}): a scaled distance is undefined"
    return note


def column_health(
    spec: ModelSpec, current: pd.DataFrame, reference: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per feature: missing shares (0-1) in current and reference, whether drift is computable, and a flag.

    A column missing in every current row while the reference has values is flagged: a client or
    an upstream system stopped sending it.
    """
    health = {}
    for name, feature in spec.features.items():
        now, then = current[name], reference[name]
        note = _drift_note(now, then, feature.type == "numeric")
        missing_now = float(now.isna().mean()) if len(now) else 1.0
        missing_then = float(then.isna().mean()) if len(then) else 1.0
        health[name] = {
            "missing_current": round(missing_now, 4),
            "missing_reference": round(missing_then, 4),
            "drift": None if note is None else f"not computable: {note}",
            "flagged": missing_now == 1.0 and missing_then < 1.0,
        }
    return health


def data_definition(spec: ModelSpec, with_quality: bool) -> DataDefinition:
    """Evidently's column mapping, from the spec: 0/1 flags are compared as categories.

    Quality is judged on the model's own 0/1 decisions (`prediction`, made at its threshold),
    never on probabilities: given probabilities, Evidently would cut them at 0.5. A regression's
    quality uses Evidently's regression mapping (outcome and predicted value, both numbers).
    """
    numeric = [n for n, f in spec.features.items() if f.type == "numeric"]
    categorical = [n for n, f in spec.features.items() if f.type != "numeric"]
    if spec.is_regression:  # the outcome is a number: Evidently's regression mapping
        regression = [Regression(target=OUTCOME, prediction=PREDICTION)] if with_quality else None
        return DataDefinition(
            numerical_columns=numeric, categorical_columns=categorical, regression=regression
        )
    quality = [BinaryClassification(target=OUTCOME, prediction_labels=PREDICTION)]
    return DataDefinition(
        numerical_columns=numeric,
        categorical_columns=categorical,
        classification=quality if with_quality else None,
    )


def _dataset(frame: pd.DataFrame, spec: ModelSpec, with_quality: bool) -> Dataset:
    columns = spec.feature_names + ([OUTCOME, PREDICTION] if with_quality else [])
    frame = frame[columns].reset_index(drop=True)
    if with_quality:
        # A regression's outcome and prediction are numbers in the target's units; a classification's are 0/1.
        kind = float if spec.is_regression else int
        frame = frame.astype({OUTCOME: kind, PREDICTION: kind})
    return Dataset.from_pandas(frame, data_definition=data_definition(spec, with_quality))


def quality_test_values(frame: pd.DataFrame, floors: Floors, spec: ModelSpec) -> tuple[float, float]:
    """The (recall, precision) values Evidently's "≥" tests use, so that they agree with the gate.

    A rate fails only when it is significantly below its floor (the Wilson interval lies under
    it), so each test's value is the lowest rate on these rows whose interval still reaches the
    floor; see `clinrisk.gate.lowest_not_below`.
    """
    confidence = 1 - spec.gate.alpha
    positives, flagged = int(frame[OUTCOME].astype(int).sum()), int(frame[PREDICTION].astype(int).sum())
    return (
        lowest_not_below(positives, floors.recall, confidence),
        lowest_not_below(flagged, floors.precision, confidence),
    )


def _quality_preset(
    frame: pd.DataFrame, floors: Floors, spec: ModelSpec
) -> ClassificationPreset | RegressionPreset:
    """Quality tests: R² against its floor for a regression, Wilson-aware recall and precision otherwise."""
    if floors.r2 is not None:
        return RegressionPreset(r2score_tests=[gte(floors.r2)])
    recall, precision = quality_test_values(frame, floors, spec)
    return ClassificationPreset(recall_tests=[gte(recall)], precision_tests=[gte(precision)])


def _merge(first: Snapshot, second: Snapshot) -> Snapshot:
    """One snapshot holding both reports' metrics, widgets and tests (same metadata as the first)."""
    merged, extra = first.to_snapshot_model(), second.to_snapshot_model()
    merged.metric_results.update(extra.metric_results)
    merged.top_level_metrics = [*merged.top_level_metrics, *extra.top_level_metrics]
    merged.widgets = [*merged.widgets, *extra.widgets]
    merged.tests_widgets = [*merged.tests_widgets, *extra.tests_widgets]
    return Snapshot.load_model(merged)


def monitoring_snapshot(
    spec: ModelSpec,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    labelled: pd.DataFrame | None,
    floors: Floors,
    metadata: dict[str, str],
) -> Snapshot:
    """Data drift and data summary on every current row; quality on the labelled rows, if any.

    Quality needs a target on every row, so it runs on the labelled rows as a second report
    and the two are merged into the one snapshot that is saved and browsed.
    """
    features = spec.feature_names
    health = column_health(spec, current, reference)
    data = Report([*_drift_metrics(health, floors), DataSummaryPreset(columns=features)])
    name = metadata.get("title", spec.name)
    snapshot = data.run(
        _dataset(current, spec, False),
        _dataset(reference, spec, False),
        metadata=metadata,
        tags=[spec.name],
        name=name,
    )
    if labelled is None:
        return snapshot
    quality = Report([_quality_preset(labelled, floors, spec)]).run(
        _dataset(labelled, spec, True), _dataset(reference, spec, True)
    )
    return _merge(snapshot, quality)


def _drift_metrics(health: dict[str, dict[str, Any]], floors: Floors) -> list:
    """Drift of the columns where it is computable (none at all: no drift metrics)."""
    columns = [c for c, h in health.items() if h["drift"] is None]
    if not columns:
        return []
    return [
        DataDriftPreset(columns=columns, drift_share=floors.drift_share, **DRIFT_METHODS),
        DriftedColumnsCount(
            columns=columns,
            drift_share=floors.drift_share,
            share_tests=[lt(floors.drift_share)],
            **DRIFT_METHODS,
        ),
    ]


def comparison_snapshot(
    spec: ModelSpec,
    challenger: pd.DataFrame,
    champion: pd.DataFrame | None,
    floors: Floors,
    metadata: dict[str, str],
) -> Snapshot:
    """Classification quality of the challenger (current) against the champion (reference) on one holdout."""
    report = Report([_quality_preset(challenger, floors, spec)])
    reference = _dataset(champion, spec, True) if champion is not None else None
    return report.run(
        _dataset(challenger, spec, True),
        reference,
        metadata=metadata,
        tags=[spec.name, "retrain"],
        name=metadata.get("title", spec.name),
    )


def _column_drift(config: dict, value: Any) -> dict[str, Any]:
    threshold = float(config.get("threshold") or DRIFT_METHODS["threshold"])
    score = float(value)
    return {
        "score": round(score, 4),
        "threshold": threshold,
        "method": config.get("method"),
        "drifted": score >= threshold,
    }


def facts(snapshot: Snapshot) -> ReportFacts:
    """Read the drift share, per-column drift, failed tests and quality back from a snapshot."""
    result = snapshot.dict()
    found = ReportFacts(failed_tests=[t["name"] for t in result["tests"] if t["status"] in ("FAIL", "ERROR")])
    for metric in result["metrics"]:
        config, value = metric.get("config", {}), metric.get("value")
        kind = config.get("type", "").rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            found.drift_share = float(value["share"])
        elif kind == "ValueDrift":
            found.column_drift[config["column"]] = _column_drift(config, value)
        elif kind == "Recall":
            found.recall = float(value)
        elif kind == "Precision":
            found.precision = float(value)
        elif kind == "R2Score":
            found.r2 = float(value)
    return found


def save(snapshot: Snapshot, directory: Path, header_html: str = "") -> tuple[Path, Path]:
    """Write the self-contained HTML (scripts and fonts inlined) with a header, and the JSON."""
    html = snapshot.get_html_str(as_iframe=False)
    if header_html:
        html = html.replace("<body>", f"<body>\n{header_html}", 1)
    html_path, json_path = directory / "report.html", directory / "report.json"
    outputs.write_text(html_path, html)
    outputs.write_text(json_path, snapshot.json())
    return html_path, json_path


def add_to_workspace(path: Path, project_name: str, snapshot: Snapshot, description: str = "") -> str:
    """Store a snapshot in a local Evidently workspace (browse it with `evidently ui`); returns its id."""
    path.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(path))
    projects = workspace.search_project(project_name)
    project = projects[0] if projects else workspace.create_project(project_name, description=description)
    return str(workspace.add_run(project.id, snapshot, include_data=False).id)


def workspace_runs(path: Path, project_name: str) -> list[str]:
    """The ids of the snapshots stored for a project (empty when there is none)."""
    workspace = Workspace(str(path))
    projects = workspace.search_project(project_name)
    return [str(i) for i in workspace.list_runs(projects[0].id)] if projects else []
