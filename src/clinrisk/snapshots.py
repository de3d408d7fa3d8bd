"""Snapshots of the labelled store: the rows a training uses, and a digest that names them.

The digest is the sha256 of the sorted content hashes of the rows, so two snapshots with the
same rows have the same digest whatever the order they arrived in. A registered version is
tagged with its snapshot's digest and members (store row ids, as ranges), so the next retrain
knows which rows the champion saw: those are never used to compare it with a challenger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clinrisk import database, labelled
from clinrisk.data import validate_frame
from clinrisk.settings import PROJECT_ROOT, Settings
from clinrisk.spec import ModelSpec

ROW_ID, SOURCE, ARRIVED_AT, CONTENT_HASH = "_row_id", "_source", "_arrived_at", "_content_hash"
DIGEST_TAG, MEMBERS_TAG = "data.snapshot", "data.members"


@dataclass
class Snapshot:
    """Every labelled row of a model at one moment: features, target and where each row came from.

    `frame` holds the spec's features, the target, and the columns `_row_id`, `_source`,
    `_arrived_at` and `_content_hash`, oldest row first.
    """

    model_name: str
    frame: pd.DataFrame
    digest: str
    positives: int
    by_source: dict[str, int]

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def row_ids(self) -> list[int]:
        return [int(i) for i in self.frame[ROW_ID]]

    def summary(self) -> dict:
        """The `data` object of `clinrisk train` and `clinrisk data status`."""
        return {
            "rows": self.rows,
            "positives": self.positives,
            "by_source": self.by_source,
            "snapshot": self.digest,
        }


def seed_path(spec: ModelSpec) -> Path:
    """The spec's raw file, relative to the working directory or else to the checkout."""
    local = Path(spec.data.path)
    return local if local.exists() else PROJECT_ROOT / spec.data.path


def take(settings: Settings, spec: ModelSpec) -> Snapshot:
    """Load the seed file on first use, import new feedback, and return every stored row."""
    engine = database.connect(settings.prediction_log_url)
    try:
        labelled.ensure_seed(engine, spec, seed_path(spec))
        labelled.import_feedback(engine, spec)
        rows = labelled.read_rows(engine, spec.name)
    finally:
        engine.dispose()
    return from_rows(spec, rows)


def from_rows(spec: ModelSpec, rows: pd.DataFrame) -> Snapshot:
    """A snapshot of stored rows (`labelled.read_rows`), typed as a training frame."""
    features = pd.DataFrame(list(rows["features"]), columns=spec.feature_names)
    features[spec.target.column] = labelled.target_values(spec, rows["outcome"])
    frame = validate_frame(features, spec, require_target=True, require_both_classes=False)
    frame[ROW_ID] = rows["row_id"].astype(int).to_numpy()
    frame[SOURCE] = rows["source"].to_numpy()
    frame[ARRIVED_AT] = pd.to_datetime(rows["arrived_at"], utc=True).to_numpy()
    frame[CONTENT_HASH] = rows["content_hash"].to_numpy()
    counts = rows["source"].value_counts()
    return Snapshot(
        model_name=spec.name,
        frame=frame,
        digest=labelled.digest_of(list(rows["content_hash"])),
        positives=0 if spec.is_regression else int(frame[spec.target.column].sum()),
        by_source={str(k): int(v) for k, v in sorted(counts.items())},
    )


def encode_members(row_ids: list[int]) -> str:
    """Row ids as compact ranges, e.g. `1-5110,5200,5301-5330` (rows arrive in runs)."""
    ids = sorted(set(row_ids))
    ranges: list[str] = []
    start = previous = None
    for row_id in [*ids, None]:
        if start is not None and row_id == previous + 1:
            previous = row_id
            continue
        if start is not None:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = row_id
    return ",".join(ranges)


def decode_members(text: str) -> set[int]:
    """The inverse of `encode_members`."""
    members: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        members.update(range(int(low), int(high or low) + 1))
    return members


@dataclass
class EvaluationPlan:
    """Which rows the challenger trains on and which rows both models are scored on, and why."""

    train: pd.DataFrame
    evaluation: pd.DataFrame | None  # None: a stratified holdout of `train` (no champion snapshot)
    rule: str


def plan_evaluation(snapshot: Snapshot, spec: ModelSpec, champion_members: set[int] | None) -> EvaluationPlan:
    """The README's rule: score on rows the champion never saw, the newest ones by arrival.

    With no champion, or a champion whose training rows are unknown, a stratified holdout of the
    snapshot is used, as for a first model. Otherwise the rows outside the champion's snapshot,
    newest first, up to `holdout_fraction` of the snapshot, are held out; older new rows train.
    """
    frame = snapshot.frame
    split = "random" if spec.is_regression else "stratified"  # a number has no classes to stratify by
    if champion_members is None:
        return EvaluationPlan(frame, None, f"{split} holdout of the snapshot (no champion snapshot known)")
    new = frame[~frame[ROW_ID].isin(champion_members)]
    if new.empty:
        return EvaluationPlan(frame, None, f"{split} holdout of the snapshot (no row is new to the champion)")
    cap = max(1, math.ceil(spec.training.holdout_fraction * len(frame)))
    newest = new.sort_values([ARRIVED_AT, ROW_ID], ascending=False).head(cap)
    train = frame[~frame[ROW_ID].isin(newest[ROW_ID])]
    rule = (
        f"the {len(newest)} newest of {len(new)} rows the champion never saw "
        f"(at most {spec.training.holdout_fraction:g} of the snapshot)"
    )
    return EvaluationPlan(train, newest.sort_values(ROW_ID), rule)
