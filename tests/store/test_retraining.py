"""The steps of the retrain sequence that decide without any server: skipping and refitting."""

from __future__ import annotations

import pandas as pd
import pytest

from clinrisk.retraining import Champion, TrainingData, served_model, skip_reason
from clinrisk.snapshots import Snapshot
from clinrisk.train import train_model


def store_data(spec, frame: pd.DataFrame, digest: str = "abc") -> TrainingData:
    snapshot = Snapshot("stroke", frame, digest, int(frame["stroke"].sum()), {"seed": len(frame)})
    return TrainingData(spec, frame, digest, "labelled store", snapshot)


@pytest.mark.parametrize(
    ("champion", "skipped"),
    [
        (Champion(), None),
        (
            Champion(version="3", snapshot_digest="abc", latest_version="3", latest_snapshot_digest="abc"),
            "version 3",
        ),
        (
            Champion(version="3", snapshot_digest="old", latest_version="4", latest_snapshot_digest="abc"),
            "version 4",
        ),
        (
            Champion(version="3", snapshot_digest="old", latest_version="4", latest_snapshot_digest="old"),
            None,
        ),
        (Champion(version="3", snapshot_digest=None, latest_version="3"), None),
    ],
)
def test_a_retrain_is_skipped_only_on_a_snapshot_already_judged(stroke_spec, raw_stroke, champion, skipped):
    """It skips when the champion or the newest version saw this snapshot, and names that version."""
    reason = skip_reason(store_data(stroke_spec, raw_stroke), champion)
    if skipped is None:
        assert reason is None
    else:
        assert reason.startswith("no new labelled data since ") and skipped in reason


def test_a_file_given_always_trains(stroke_spec, raw_stroke):
    """With --data there is no snapshot, so nothing is skipped."""
    data = TrainingData(stroke_spec, raw_stroke, "sha", "file.csv")
    assert skip_reason(data, Champion(version="1", snapshot_digest="sha")) is None


def test_the_served_model_is_refit_on_every_row_with_the_threshold_kept(fast_settings, raw_stroke):
    """The registered model saw all rows; its threshold is the out-of-fold one of the judged model."""
    from clinrisk.data import validate_frame
    from clinrisk.spec import load_spec

    spec = load_spec(fast_settings.spec_path)
    frame = validate_frame(raw_stroke, spec, require_target=True)
    data = store_data(spec, frame)
    result = train_model(spec, frame)
    served = served_model(data, result)
    assert served.model is not result.model and served.model.threshold == result.model.threshold
    assert served.model.info["refit_rows"] == len(frame) and served.holdout_metrics == result.holdout_metrics
    file_result = served_model(TrainingData(spec, frame, "sha", "file.csv"), result)
    assert file_result is result
