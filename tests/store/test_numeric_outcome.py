"""A regression's outcome in the labelled store: a number kept whole (migration 0004), never truncated."""

from __future__ import annotations

import pandas as pd
import pytest

from clinrisk import database, labelled, snapshots
from clinrisk.spec import load_spec
from store.conftest import write_batch
from support import REPO

PROGRESSION = REPO / "models" / "diabetes_progression.yaml"


@pytest.fixture
def progression_store(settings):
    """A migrated store holding the diabetes-progression seed file (442 rows)."""
    spec = load_spec(PROGRESSION)
    engine = database.connect(settings.prediction_log_url)
    labelled.ensure_seed(engine, spec, REPO / spec.data.path)
    yield engine, spec
    engine.dispose()


def test_a_regression_outcome_is_stored_and_read_back_whole(progression_store, tmp_path):
    """Fractional outcomes of a batch come back as the same numbers in the next snapshot."""
    engine, spec = progression_store
    raw = pd.read_csv(REPO / spec.data.path)
    outcomes = [151.4, 75.25, 0.5]
    batch = raw.head(3).assign(**{spec.target.column: outcomes})
    before = snapshots.from_rows(spec, labelled.read_rows(engine, spec.name))
    added = labelled.add_batch(engine, spec, write_batch(batch, tmp_path / "new.csv"))
    assert added.added == 3
    after = snapshots.from_rows(spec, labelled.read_rows(engine, spec.name))
    assert after.frame[spec.target.column].tail(3).tolist() == outcomes
    assert after.frame[spec.target.column].head(len(raw)).tolist() == raw[spec.target.column].tolist()
    assert after.digest != before.digest and after.positives == 0


@pytest.mark.parametrize("outcome", [0, 1, 0.0, 1.0])
def test_a_classification_label_hashes_as_before_the_float_column(outcome):
    """0/1 labels (read back as 0.0/1.0) hash as the integers they were, so old snapshot digests hold."""
    features = {"age": 67.0, "gender": "Male"}
    assert labelled.content_hash(features, outcome, "9046") == labelled.content_hash(
        features, int(outcome), "9046"
    )
    assert labelled.content_hash(features, 151.4, None) != labelled.content_hash(features, 151, None)


def test_a_snapshot_of_text_labels_reads_back_as_the_same_classes(settings):
    """anemia's Yes/No target is stored as 1/0 and its snapshot validates back to the same classes."""
    spec = load_spec(REPO / "models" / "anemia.yaml")
    engine = database.connect(settings.prediction_log_url)
    try:
        labelled.ensure_seed(engine, spec, REPO / spec.data.path)
        snapshot = snapshots.from_rows(spec, labelled.read_rows(engine, spec.name))
    finally:
        engine.dispose()
    raw = pd.read_csv(REPO / spec.data.path)
    expected = (raw[spec.target.column] == spec.target.positive).astype(int).tolist()
    assert snapshot.frame[spec.target.column].tolist() == expected
    assert snapshot.positives == sum(expected) == 26
