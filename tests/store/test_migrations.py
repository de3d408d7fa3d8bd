"""Alembic migrations of the application database: fresh databases, and ones made before migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    inspect,
    select,
)

from clinrisk import database, labelled, predlog
from support import PATIENT
from web.web_support import postgres_server


def first_release_schema() -> MetaData:
    """The prediction log's tables as the first release created them (`metadata.create_all`)."""
    schema = MetaData()
    Table(
        "predictions",
        schema,
        Column("prediction_id", String(36), primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
        Column("model_name", String(64), nullable=False, index=True),
        Column("model_version", String(32), nullable=False),
        Column("features", Text, nullable=False),
        Column("probability", Float, nullable=False),
        Column("prediction", Integer, nullable=False),
    )
    Table(
        "feedback",
        schema,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("prediction_id", String(36), nullable=False, index=True),
        Column("outcome", Integer, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )
    return schema


def make_old_database(url: str, rows: int = 25) -> None:
    """The prediction log exactly as the code before migrations created it, with rows in it."""
    engine = create_engine(url)
    first_release_schema().create_all(engine)
    now = datetime.now(UTC)
    predlog.write_predictions(
        engine,
        [
            {
                "prediction_id": f"00000000-0000-0000-0000-{i:012d}",
                "created_at": now,
                "model_name": "stroke",
                "model_version": "1",
                "features": PATIENT,
                "probability": 0.5,
                "prediction": 1,
            }
            for i in range(rows)
        ],
    )
    predlog.write_feedback(
        engine, [{"prediction_id": "00000000-0000-0000-0000-000000000003", "outcome": 1, "received_at": now}]
    )
    engine.dispose()


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(predlog.predictions)).scalar_one(),
            conn.execute(select(func.count()).select_from(predlog.feedback)).scalar_one(),
        )


def assert_upgraded_without_loss(url: str) -> None:
    make_old_database(url)
    engine = database.connect(url)
    assert database.current_revision(engine) == database.head_revision()
    assert counts(engine) == (25, 1)
    assert {"labelled_examples", "labelled_batches"} <= set(inspect(engine).get_table_names())
    window = predlog.read_window(engine, "stroke")
    assert len(window) == 25 and set(window["prediction"]) == {1} and set(window["probability"]) == {0.5}
    assert window["outcome"].dropna().tolist() == [1]
    assert labelled.count_rows(engine, "stroke") == 0
    assert_regression_rows_are_kept_whole(engine)
    engine.dispose()


def assert_regression_rows_are_kept_whole(engine) -> None:
    """A regression's prediction (no probability, a value) and its numeric outcome, stored and read back."""
    prediction_id = "11111111-1111-1111-1111-111111111111"
    now = datetime.now(UTC)
    row = {
        "prediction_id": prediction_id,
        "created_at": now,
        "model_name": "diabetes_progression",
        "model_version": "2",
        "features": {"age": 0.03, "bmi": 0.06},
        "probability": None,
        "prediction": 151.37,
        "requested_by": "alice",
    }
    predlog.write_predictions(engine, [row])
    predlog.write_feedback(engine, [{"prediction_id": prediction_id, "outcome": 172.5, "received_at": now}])
    window = predlog.read_window(engine, "diabetes_progression")
    assert window[["prediction", "outcome"]].to_numpy().tolist() == [[151.37, 172.5]]
    assert window["probability"].isna().all()
    assert predlog.prediction_exists(engine, prediction_id, "diabetes_progression")
    assert not predlog.prediction_exists(engine, prediction_id, "stroke")


def test_a_fresh_sqlite_database_is_created_at_the_newest_revision(tmp_path):
    """A new database gets every table through the migrations, and a second connect changes nothing."""
    url = f"sqlite:///{tmp_path / 'new' / 'predictions.db'}"
    engine = database.connect(url)
    assert database.current_revision(engine) == database.head_revision() == "0005"
    assert {"predictions", "feedback", "labelled_examples", "labelled_batches"} <= set(
        inspect(engine).get_table_names()
    )
    database.upgrade(engine)  # already at head: a no-op
    assert database.current_revision(engine) == "0005"
    assert_regression_rows_are_kept_whole(engine)


def test_a_sqlite_database_of_the_previous_schema_upgrades_without_losing_a_row(tmp_path):
    """A log made before migrations is stamped at 0001, upgraded, and keeps every row."""
    assert_upgraded_without_loss(f"sqlite:///{tmp_path / 'predictions.db'}")


@pytest.mark.slow
def test_a_postgresql_database_of_the_previous_schema_upgrades_without_losing_a_row():
    """The same upgrade on a real PostgreSQL server, the production database under compose."""
    with postgres_server() as url:
        assert_upgraded_without_loss(url)


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    """A database that cannot be opened fails saying why, with no connection string or password."""
    with pytest.raises(database.DatabaseError, match="database is unavailable: OperationalError") as failure:
        database.connect("postgresql+psycopg2://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(failure.value) and "postgresql+psycopg2" not in str(failure.value)


def test_0005_downgrades_a_classification_only_log_without_loss(tmp_path):
    """Back to 0004 a log of 0/1 decisions keeps every row and its integer columns; up again is the same."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    make_old_database(url)
    engine = database.connect(url)
    command.downgrade(database.alembic_config(engine), "0004")
    columns = {c["name"]: c for c in inspect(engine).get_columns("predictions")}
    assert database.current_revision(engine) == "0004" and counts(engine) == (25, 1)
    assert isinstance(columns["prediction"]["type"], Integer) and not columns["probability"]["nullable"]
    database.upgrade(engine)
    assert database.current_revision(engine) == "0005"
    assert predlog.read_window(engine, "stroke")["outcome"].dropna().tolist() == [1]
    engine.dispose()
