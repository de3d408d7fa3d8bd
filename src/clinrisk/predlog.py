"""The prediction log: every served prediction and every observed outcome, through SQLAlchemy.

SQLite in the state directory by default, PostgreSQL through a URL under compose. The web
service writes it; the monitor flow reads a recent window of it as "current" data. The tables
below mirror the Alembic migrations in `clinrisk/migrations`, which create and change them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from clinrisk import database
from clinrisk.database import DatabaseError

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("prediction_id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(64), nullable=False, index=True),
    Column("model_version", String(32), nullable=False),
    Column("features", Text, nullable=False),  # JSON object of the validated input
    # A classification logs its calibrated probability and 0/1 decision; a regression no
    # probability and its predicted value, in the target's units (migration 0005).
    Column("probability", Float, nullable=True),
    Column("prediction", Float, nullable=False),
    Column("requested_by", String(64), nullable=True),  # the user (or API key's owner) who asked
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(36), nullable=False, index=True),
    Column("outcome", Float, nullable=False),  # 0/1, or a regression's measured value
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("requested_by", String(64), nullable=True),
)


class PredictionLogError(DatabaseError):
    """The prediction log database cannot be reached or written."""


def connect(url: str) -> Engine:
    """Open the log database, migrated to the newest schema (see `clinrisk.database`)."""
    try:
        return database.connect(url)
    except DatabaseError as exc:
        raise PredictionLogError(f"the prediction log is unavailable: {exc}") from exc


safe_reason = database.safe_reason


def engine_url_safe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return database.safe_url(url)


def write_predictions(engine: Engine, rows: Iterable[dict[str, Any]]) -> int:
    """Insert prediction rows (features as a dict); returns how many were written."""
    # orjson: a tenth of json.dumps's time, and the writer thread shares the worker's GIL.
    records = [{**r, "features": orjson.dumps(r["features"], default=float).decode()} for r in rows]
    if not records:
        return 0
    with engine.begin() as conn:
        conn.execute(insert(predictions), records)
    return len(records)


def write_feedback(engine: Engine, rows: Iterable[dict[str, Any]]) -> int:
    records = list(rows)
    if not records:
        return 0
    with engine.begin() as conn:
        conn.execute(insert(feedback), records)
    return len(records)


def prediction_exists(engine: Engine, prediction_id: str, model_name: str | None = None) -> bool:
    """Whether the prediction is logged (and was made by `model_name`, when one is given)."""
    query = select(predictions.c.prediction_id).where(predictions.c.prediction_id == prediction_id)
    if model_name is not None:
        query = query.where(predictions.c.model_name == model_name)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def read_window(
    engine: Engine, model_name: str, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Logged predictions of a model in [since, until), features expanded into columns.

    The latest outcome received for each prediction is joined as `outcome` (NaN if none yet).
    """
    query = select(predictions).where(predictions.c.model_name == model_name)
    if since is not None:
        query = query.where(predictions.c.created_at >= since)
    if until is not None:
        query = query.where(predictions.c.created_at < until)
    with engine.connect() as conn:
        logged = pd.DataFrame(conn.execute(query.order_by(predictions.c.created_at)).mappings().all())
        outcomes = pd.DataFrame(conn.execute(select(feedback).order_by(feedback.c.id)).mappings().all())
    if logged.empty:
        return logged
    features = pd.DataFrame([json.loads(f) for f in logged.pop("features")], index=logged.index)
    window = pd.concat([features, logged], axis=1)
    latest = outcomes.drop_duplicates("prediction_id", keep="last") if not outcomes.empty else None
    lookup = latest.set_index("prediction_id")["outcome"] if latest is not None else pd.Series(dtype=float)
    window["outcome"] = window["prediction_id"].map(lookup)
    return window
