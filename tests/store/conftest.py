"""Fixtures of the labelled-store tests: a migrated SQLite database and batch files built from real rows."""

from __future__ import annotations

import pandas as pd
import pytest

from clinrisk import database, labelled
from support import RAW_STROKE


@pytest.fixture
def engine(settings):
    """The application database of a fresh state directory, migrated, with the seed file loaded."""
    engine = database.connect(settings.prediction_log_url)
    labelled.ensure_seed(engine, settings_spec(settings), RAW_STROKE)
    yield engine
    engine.dispose()


def settings_spec(settings):
    from clinrisk.spec import load_spec

    return load_spec(settings.spec_path)


@pytest.fixture
def new_patients(raw_stroke) -> pd.DataFrame:
    """40 real rows (3 strokes at least) under new ids: a plausible batch from a lab."""
    batch = pd.concat(
        [raw_stroke[raw_stroke.stroke == 1].head(3), raw_stroke[raw_stroke.stroke == 0].head(37)]
    )
    return batch.assign(id=batch["id"] + 1_000_000).reset_index(drop=True)


def write_batch(frame: pd.DataFrame, path) -> object:
    """Write a batch as CSV or Parquet, by the file's suffix."""
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
