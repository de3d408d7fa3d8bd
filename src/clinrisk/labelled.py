"""The labelled store: every labelled example a model may learn from, per model, append-only.

Rows come from three sources: the spec's raw file (`seed`, loaded once, the first time a model's
data is needed, its sha256 checked), labelled batch files (`batch:<file name>`, from
`clinrisk data add` or the inbox) and outcomes posted to `/feedback` (`feedback`, with the
features logged for that prediction: the ones the model saw). Each row keeps its features as
JSON, the outcome, its source and batch, the original id, when it arrived and a content hash.
The tables live in the prediction log's database and are created by Alembic revision 0002.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from clinrisk import predlog
from clinrisk.data import inspect_frame, load_training_data, read_table, validate_frame
from clinrisk.errors import ClinriskError, DataValidationError
from clinrisk.spec import ModelSpec, file_sha256

log = logging.getLogger(__name__)
metadata = MetaData()
SEED, FEEDBACK, BATCH_PREFIX = "seed", "feedback", "batch:"
SHOWN_IDS = 10

batches = Table(
    "labelled_batches",
    metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("model_name", String(64), nullable=False),
    Column("source", String(300), nullable=False),
    Column("content_digest", String(64), nullable=False),
    Column("file_sha256", String(64), nullable=True),
    Column("rows", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

examples = Table(
    "labelled_examples",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(64), nullable=False),
    Column("source", String(300), nullable=False),
    Column("batch_id", String(36), ForeignKey("labelled_batches.batch_id"), nullable=False),
    Column("original_id", String(64), nullable=True),
    Column("features", Text, nullable=False),
    # 0/1 for a classification, the measured value for a regression (Float since migration 0004).
    Column("outcome", Float, nullable=False),
    Column("arrived_at", DateTime(timezone=True), nullable=False),
    Column("content_hash", String(64), nullable=False),
)


class DuplicateBatchError(ClinriskError):
    """A batch whose content is already in the store."""


@dataclass(frozen=True)
class AddResult:
    """What one batch did to the store: rows added, its batch id, and the model's total rows."""

    added: int
    batch: str | None
    rows: int
    skipped: int = 0


def _json_value(value: Any) -> Any:
    """A JSON-safe feature value: NaN and NA become null, numpy scalars plain Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def outcome_value(outcome: float) -> int | float:
    """A whole-number outcome as an int (every 0/1 label), any other as a float (a regression's value).

    So a classification's hashes are the ones written before outcomes could be numbers, and a
    regression's outcome is kept whole, never truncated.
    """
    value = float(outcome)
    return int(value) if value.is_integer() else value


def target_values(spec: ModelSpec, outcomes: pd.Series) -> np.ndarray:
    """Stored outcomes as the spec's target column: a regression's numbers, or the classification's
    own labels (1 -> `target.positive`, 0 -> `target.negative`, e.g. anemia's Yes/No), which
    validation encodes back to 0/1."""
    if spec.is_regression:
        return outcomes.astype(float).to_numpy()
    return np.where(outcomes.astype(int).to_numpy() == 1, spec.target.positive, spec.target.negative)


def content_hash(features: dict[str, Any], outcome: float, original_id: str | None) -> str:
    """sha256 of one example's canonical JSON (sorted keys): equal content, equal hash."""
    y = outcome_value(outcome)
    text = json.dumps({"f": features, "y": y, "id": original_id}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_of(hashes: list[str]) -> str:
    """The digest of a set of examples: sha256 of their sorted content hashes."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def records_from_frame(clean: pd.DataFrame, spec: ModelSpec) -> list[dict[str, Any]]:
    """One store record per validated row: features, outcome, original id and content hash."""
    records = []
    has_id = spec.id_column is not None and spec.id_column in clean.columns
    for index, row in clean.iterrows():
        features = {name: _json_value(row[name]) for name in spec.feature_names}
        original = str(_json_value(row[spec.id_column])) if has_id and pd.notna(row[spec.id_column]) else None
        outcome = outcome_value(row[spec.target.column])
        records.append(
            {
                "line": int(index) + 2,
                "features": features,
                "outcome": outcome,
                "original_id": original,
                "content_hash": content_hash(features, outcome, original),
            }
        )
    return records


def _stored(engine: Engine, model_name: str, column) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(column, examples.c.outcome, examples.c.content_hash).where(
                examples.c.model_name == model_name
            )
        ).all()
    return {r[0]: r for r in rows if r[0] is not None}


def _conflicts(records: list[dict], by_id: dict[str, Any]) -> list[str]:
    """Ids already stored with a different outcome."""
    return [
        r["original_id"]
        for r in records
        if r["original_id"] in by_id and by_id[r["original_id"]].outcome != r["outcome"]
    ]


def _insert(
    engine: Engine, spec: ModelSpec, source: str, records: list[dict], digest: str, sha: str | None
) -> str:
    """One batch row and its examples, in one transaction; returns the batch id."""
    batch_id, now = str(uuid.uuid4()), datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(batches),
            {
                "batch_id": batch_id,
                "model_name": spec.name,
                "source": source,
                "content_digest": digest,
                "file_sha256": sha,
                "rows": len(records),
                "added": len(records),
                "added_at": now,
            },
        )
        if records:
            rows = [
                {
                    "model_name": spec.name,
                    "source": source,
                    "batch_id": batch_id,
                    "original_id": r["original_id"],
                    "features": json.dumps(r["features"]),
                    "outcome": r["outcome"],
                    "arrived_at": r.get("arrived_at", now),
                    "content_hash": r["content_hash"],
                }
                for r in records
            ]
            conn.execute(insert(examples), rows)
    return batch_id


def count_rows(engine: Engine, model_name: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(examples).where(examples.c.model_name == model_name)
        return int(conn.execute(query).scalar_one())


def has_seed(engine: Engine, model_name: str) -> bool:
    with engine.connect() as conn:
        query = select(batches.c.batch_id).where(batches.c.model_name == model_name, batches.c.source == SEED)
        return conn.execute(query).first() is not None


def ensure_seed(engine: Engine, spec: ModelSpec, seed_path: Path) -> bool:
    """Load the spec's raw file into the store once (sha256 checked); True when it was loaded now."""
    if has_seed(engine, spec.name):
        return False
    frame = load_training_data(spec, seed_path, expected_sha256=spec.data.sha256)
    records = records_from_frame(frame, spec)
    digest = digest_of([r["content_hash"] for r in records])
    try:
        _insert(engine, spec, SEED, records, digest, file_sha256(seed_path))
    except IntegrityError:  # another process loaded it at the same moment
        return False
    log.info("loaded the seed file %s into the %s store (%d rows)", seed_path, spec.name, len(records))
    return True


def validate_batch(spec: ModelSpec, path: Path) -> pd.DataFrame:
    """Read and validate a batch exactly like a training file (one class alone is allowed)."""
    return validate_frame(read_table(path, spec), spec, require_target=True, require_both_classes=False)


def add_batch(engine: Engine, spec: ModelSpec, path: Path) -> AddResult:
    """Add a labelled CSV or Parquet file whole, or nothing.

    Raises DataValidationError (bad rows, or ids stored with another outcome, naming them) and
    DuplicateBatchError (the same content was added before). Rows already stored are skipped.
    """
    path = Path(path)
    records = records_from_frame(validate_batch(spec, path), spec)
    digest = digest_of([r["content_hash"] for r in records])
    earlier = _batch_with_digest(engine, spec.name, digest)
    if earlier:
        raise DuplicateBatchError(f"{path.name}: this content was added before (batch {earlier})")
    conflicts = _conflicts(records, _stored(engine, spec.name, examples.c.original_id))
    if conflicts:
        shown = ", ".join(conflicts[:SHOWN_IDS]) + (" ..." if len(conflicts) > SHOWN_IDS else "")
        raise DataValidationError(
            f"{path.name}: {len(conflicts)} id(s) already stored with a different outcome: {shown}"
        )
    known = set(_stored(engine, spec.name, examples.c.content_hash))
    new = [r for r in records if r["content_hash"] not in known]
    try:
        batch = _insert(engine, spec, BATCH_PREFIX + path.name, new, digest, file_sha256(path))
    except IntegrityError:
        raise DuplicateBatchError(f"{path.name}: this content was added at the same moment") from None
    return AddResult(len(new), batch, count_rows(engine, spec.name), skipped=len(records) - len(new))


def _batch_with_digest(engine: Engine, model_name: str, digest: str) -> str | None:
    with engine.connect() as conn:
        query = select(batches.c.batch_id).where(
            batches.c.model_name == model_name, batches.c.content_digest == digest
        )
        found = conn.execute(query).first()
    return found[0] if found else None


def _new_feedback(engine: Engine, spec: ModelSpec) -> pd.DataFrame:
    """Outcomes of this model's logged predictions that are not in the store yet (latest per id)."""
    with engine.connect() as conn:
        query = (
            select(
                predlog.feedback.c.prediction_id,
                predlog.feedback.c.outcome,
                predlog.feedback.c.received_at,
                predlog.feedback.c.id,
                predlog.predictions.c.features,
            )
            .join(
                predlog.predictions, predlog.predictions.c.prediction_id == predlog.feedback.c.prediction_id
            )
            .where(predlog.predictions.c.model_name == spec.name)
            .order_by(predlog.feedback.c.id)
        )
        found = pd.DataFrame(conn.execute(query).mappings().all())
    if found.empty:
        return found
    latest = found.drop_duplicates("prediction_id", keep="last")
    stored = set(_stored(engine, spec.name, examples.c.original_id))
    return latest[~latest["prediction_id"].isin(stored)].reset_index(drop=True)


def import_feedback(engine: Engine, spec: ModelSpec) -> int:
    """Copy new `/feedback` outcomes into the store with the logged features; rows added.

    The first outcome posted for a prediction is the one kept; logged features that no longer
    pass the spec (a spec changed since) are left out and logged.
    """
    found = _new_feedback(engine, spec)
    if found.empty:
        return 0
    features = pd.DataFrame([json.loads(f) for f in found["features"]])
    features[spec.target.column] = target_values(spec, found["outcome"])
    _, _, reasons = inspect_frame(features, spec, require_target=True)
    valid = (reasons == "").to_numpy()
    if not valid.all():
        log.warning("%d logged predictions fail the spec and are not learned from", int((~valid).sum()))
    clean = validate_frame(features[valid], spec, require_target=True, require_both_classes=False)
    records = records_from_frame(clean, spec)
    for record, prediction_id, received in zip(
        records, found["prediction_id"][valid], found["received_at"][valid], strict=True
    ):
        record["original_id"] = prediction_id
        record["arrived_at"] = received
        record["content_hash"] = content_hash(record["features"], record["outcome"], prediction_id)
    try:
        _insert(engine, spec, FEEDBACK, records, digest_of([r["content_hash"] for r in records]), None)
    except IntegrityError:  # another process imported the same outcomes
        return 0
    return len(records)


def read_rows(engine: Engine, model_name: str) -> pd.DataFrame:
    """Every stored example of a model, oldest first: row_id, source, batch_id, original_id,
    features (dict), outcome, arrived_at, content_hash."""
    with engine.connect() as conn:
        query = select(examples).where(examples.c.model_name == model_name).order_by(examples.c.row_id)
        rows = pd.DataFrame(conn.execute(query).mappings().all())
    if rows.empty:
        return pd.DataFrame(columns=[c.name for c in examples.columns])
    rows["features"] = rows["features"].map(json.loads)
    return rows
