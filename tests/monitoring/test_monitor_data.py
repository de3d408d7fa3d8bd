"""Current and reference rows: reading the window, validating, scoring, choosing labelled rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from clinrisk import predlog
from clinrisk.errors import DataValidationError
from clinrisk.monitoring import monitor
from clinrisk.monitoring.schema import Floors
from clinrisk.settings import load_settings


def log_rows(frame: pd.DataFrame, spec, created_at: datetime, version: str = "1") -> list[dict]:
    """Prediction-log rows for every row of `frame`, as the web service writes them."""
    records = frame[spec.feature_names].astype(object).where(frame[spec.feature_names].notna(), None)
    return [
        {
            "prediction_id": str(uuid.uuid4()),
            "created_at": created_at,
            "model_name": spec.name,
            "model_version": version,
            "features": record,
            "probability": 0.1,
            "prediction": 0,
        }
        for record in records.to_dict("records")
    ]


def test_reads_only_the_window_of_the_prediction_log(tmp_path, stroke_spec, undrifted_sample):
    """It reads the logged rows of the last hours and leaves out older ones."""
    settings = load_settings(home=tmp_path, prediction_log_url=f"sqlite:///{tmp_path / 'log.db'}")
    now = datetime.now(UTC)
    engine = predlog.connect(settings.prediction_log_url)
    predlog.write_predictions(
        engine, log_rows(undrifted_sample.head(40), stroke_spec, now - timedelta(hours=2))
    )
    predlog.write_predictions(
        engine, log_rows(undrifted_sample.tail(7), stroke_spec, now - timedelta(days=9))
    )
    frame, window = monitor.read_current(settings, "stroke", stroke_spec, monitor.log_window(now, 168), None)
    assert len(frame) == 40
    assert window.to_dict()["source"] == "prediction log" and window.end == now


def test_logged_rows_validate_and_keep_outcomes(tmp_path, stroke_spec, undrifted_sample):
    """It validates logged rows and carries the outcomes that have arrived (NaN for the others)."""
    settings = load_settings(home=tmp_path, prediction_log_url=f"sqlite:///{tmp_path / 'log.db'}")
    engine = predlog.connect(settings.prediction_log_url)
    rows = log_rows(undrifted_sample.head(10), stroke_spec, datetime.now(UTC) - timedelta(minutes=5))
    predlog.write_predictions(engine, rows)
    predlog.write_feedback(
        engine, [{"prediction_id": rows[0]["prediction_id"], "outcome": 1, "received_at": datetime.now(UTC)}]
    )
    frame, _ = monitor.read_current(
        settings, "stroke", stroke_spec, monitor.log_window(datetime.now(UTC), 1), None
    )
    current = monitor.prepare(frame, stroke_spec, None)
    assert current["outcome"].notna().sum() == 1 and current["outcome"].max() == 1
    assert list(current["model_version"].unique()) == ["1"]


def test_quality_counts_the_outcomes_that_arrived_in_the_window(tmp_path, stroke_spec, undrifted_sample):
    """Older predictions whose outcome arrived in the window count for quality, not for drift."""
    settings = load_settings(home=tmp_path, prediction_log_url=f"sqlite:///{tmp_path / 'log.db'}")
    engine = predlog.connect(settings.prediction_log_url)
    now = datetime.now(UTC)
    recent = log_rows(undrifted_sample.head(20), stroke_spec, now - timedelta(hours=1))
    old = log_rows(undrifted_sample.tail(10), stroke_spec, now - timedelta(days=30))
    predlog.write_predictions(engine, recent + old)

    def outcome(row, days_ago: float, value: int = 1):
        return {
            "prediction_id": row["prediction_id"],
            "outcome": value,
            "received_at": now - timedelta(days=days_ago),
        }

    # In the window: 2 recent and 3 old predictions' outcomes; before it: 4 old ones (one corrected later).
    arrivals = [outcome(recent[0], 0.01), outcome(recent[1], 0.02, 0)]
    arrivals += [outcome(r, 1) for r in old[:3]] + [outcome(r, 20) for r in old[3:7]]
    arrivals.append(outcome(old[0], 0.5, 0))  # a correction: the latest outcome wins
    predlog.write_feedback(engine, arrivals)
    frame, _ = monitor.read_current(settings, "stroke", stroke_spec, monitor.log_window(now, 168), None)
    current = monitor.prepare(frame, stroke_spec, None)
    assert len(monitor.drift_rows(current)) == 20
    labelled = current[current["outcome"].notna()]
    assert len(labelled) == 5 and labelled["outcome"].tolist().count(0) == 2
    assert monitor.too_few_rows(frame, 21) is not None and monitor.too_few_rows(frame, 20) is None


def test_a_missing_column_fails_naming_it(stroke_spec, undrifted_sample):
    """It rejects a batch without a feature column with a message naming that column."""
    with pytest.raises(DataValidationError, match="avg_glucose_level"):
        monitor.prepare(undrifted_sample.drop(columns=["avg_glucose_level"]), stroke_spec, None)


def test_an_out_of_range_value_fails_naming_the_column(stroke_spec, undrifted_sample):
    """It rejects ages above the spec's maximum, naming the column and the line."""
    bad = undrifted_sample.head(20).copy()
    bad.loc[3, "age"] = 130
    with pytest.raises(DataValidationError, match=r"column 'age'.*line.* 5"):
        monitor.prepare(bad, stroke_spec, None)


def test_an_invalid_outcome_fails_naming_the_column(stroke_spec, undrifted_sample):
    """It rejects outcomes other than 0, 1 or empty."""
    bad = undrifted_sample.head(20).assign(outcome=[0, 1, 2] + [np.nan] * 17)
    with pytest.raises(DataValidationError, match="column 'outcome'"):
        monitor.prepare(bad, stroke_spec, None)


def test_the_spec_target_column_counts_as_outcome(stroke_spec, drifted_sample):
    """It reads outcomes from the spec's target column when there is no `outcome` column."""
    current = monitor.prepare(drifted_sample, stroke_spec, None)
    assert current["outcome"].sum() == drifted_sample["stroke"].sum()


@pytest.mark.parametrize(
    ("outcomes", "note"),
    [
        ([np.nan] * 60, "0 rows with outcomes"),
        ([0.0] * 60, "no positive outcome"),
        ([1.0] + [0.0] * 59, None),
    ],
)
def test_quality_is_judged_only_on_enough_labelled_rows(outcomes, note):
    """It judges quality only with enough labelled rows including a positive one."""
    current = pd.DataFrame({"outcome": outcomes, "prediction": [0] * 60})
    reference = pd.DataFrame({"outcome": [0, 1], "prediction": [0, 1]})
    labelled, why = monitor.labelled_rows(current, reference, min_rows=50)
    assert (labelled is None) == (note is not None)
    assert note is None or note in why


def test_too_few_rows_are_reported_not_judged():
    """It declines to judge a window smaller than min_rows, saying how many rows there were."""
    assert "only 3 rows" in monitor.too_few_rows(pd.DataFrame({"a": [1, 2, 3]}), 30)
    assert monitor.too_few_rows(pd.DataFrame({"a": range(30)}), 30) is None


class ThresholdModel:
    """A stand-in champion scoring by age with a 0.59 threshold; used only for unlogged rows."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        proba = (frame["age"] / 100).clip(0, 1)
        return pd.DataFrame(
            {"probability": proba, "prediction": (proba >= 0.59).astype(int)}, index=frame.index
        )


def test_logged_decisions_are_kept_and_only_unlogged_rows_are_scored(stroke_spec, undrifted_sample):
    """Quality is judged on the decisions that were served, not on a fresh scoring."""
    frame = undrifted_sample.head(6).reset_index(drop=True)
    frame["probability"] = [0.9, 0.1, 0.7, np.nan, np.nan, 0.2]
    frame["prediction"] = [1, 0, 0, np.nan, np.nan, 1]  # row 2 served 0 despite 0.7: its version's threshold
    out = monitor.prepare(frame, stroke_spec, ThresholdModel())
    assert out.loc[[0, 1, 2, 5], "prediction"].tolist() == [1, 0, 0, 1]
    expected = (frame.loc[[3, 4], "age"] / 100 >= 0.59).astype(float).tolist()
    assert out.loc[[3, 4], "prediction"].tolist() == expected


@pytest.mark.parametrize(
    ("tp", "fp", "fn", "cause"),
    [
        (8, 52, 2, None),  # precision 0.133 on 60 flagged: consistent with 0.15, no alarm
        (5, 95, 5, "precision"),  # 0.05 on 100 flagged: significantly below
        (3, 10, 17, "recall"),  # recall 0.15 on 20 positives: significantly below 0.5
        (20, 80, 5, None),
    ],
)
def test_quality_alarms_only_when_significantly_below_a_floor(tp, fp, fn, cause):
    """A rate raises a retrain cause only when its Wilson interval lies under the floor."""
    labelled = pd.DataFrame(
        {
            "outcome": [1] * tp + [0] * fp + [1] * fn + [0] * 200,
            "prediction": [1] * (tp + fp) + [0] * (fn + 200),
        }
    )
    quality = monitor.quality_estimates(labelled, 0.95)
    assert quality["precision"].trials == tp + fp and quality["recall"].trials == tp + fn
    causes = monitor.quality_causes(quality, Floors(drift_share=0.2, recall=0.5, precision=0.15))
    assert [c.split()[0] for c in causes] == ([cause] if cause else [])
    assert all("[" in c and "significantly below" in c for c in causes)
