"""The application database (prediction log and labelled store): one engine factory, migrated by Alembic.

SQLite in the state directory by default, PostgreSQL through `CLINRISK_PREDICTION_LOG_URL` under
compose. Every schema change is an Alembic revision shipped inside the package
(`clinrisk/migrations/versions`); `connect` brings the database to the newest revision before it
returns, so the service, the CLI and the flows all start on the same schema. A database created
before migrations existed (tables present, no `alembic_version`) is stamped at revision 0001, the
schema it already has, and then upgraded: no row is rewritten.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from clinrisk.errors import ClinriskError

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the schema of the prediction log before migrations existed
ADVISORY_LOCK_KEY = 720_411_009  # any constant shared by every clinrisk process
_upgraded: set[str] = set()
_lock = threading.Lock()


class DatabaseError(ClinriskError):
    """The application database cannot be reached, written or migrated."""


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as nothing secret
        return "<unparsable URL>"


def safe_reason(exc: BaseException) -> str:
    """What went wrong, for logs and error bodies: the driver's first line, never SQL or parameters."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if "[SQL:" in first or "parameters" in first.lower():
        first = ""
    return f"{type(cause).__name__}{': ' + first[:200] if first else ''}"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; stamp a pre-migration database first."""
    config = alembic_config(engine)
    if current_revision(engine) is None and inspect(engine).has_table("predictions"):
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def _sqlite_lock(url: str) -> FileLock | None:
    """Processes starting together (gunicorn workers, a flow) migrate a SQLite file one at a time."""
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        return None
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".migrate.lock", timeout=120)


@contextlib.contextmanager
def _server_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, a session advisory lock: the web service and the worker may start together."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})


def connect(url: str) -> Engine:
    """An engine on the database, migrated to the newest revision (once per process and URL).

    Raises DatabaseError naming the database (password hidden) when it cannot be reached or migrated.
    """
    try:
        lock = _sqlite_lock(url)
        # hide_parameters: a failing statement's error never carries a patient's features.
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
        with _lock:
            if url not in _upgraded and current_revision(engine) != head_revision():
                with lock or _server_lock(engine):
                    upgrade(engine)
            _upgraded.add(url)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"the database is unavailable: {safe_reason(exc)}") from exc
    return engine
