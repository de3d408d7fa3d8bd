"""Write served predictions to the prediction log in batches, from a thread off the request path.

Requests only put rows on a queue. The writer thread inserts them in batches through
`clinrisk.predlog`; rows that fail to insert (database down) are kept and retried. `close()`
drains the queue before returning, so a graceful shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from clinrisk import predlog

log = logging.getLogger(__name__)

_STOP = object()
RETRY_SECONDS = 1.0
CLOSE_ATTEMPTS = 3
MAX_PENDING_ROWS = 200_000
FEEDBACK_WAIT_SECONDS = 5.0
LOOKUP_SECONDS = 0.6  # other workers write their queue every flush_seconds (0.25 s)


class PredictionLogWriter:
    """A queue of prediction rows and the thread that persists them."""

    def __init__(self, url: str, *, flush_seconds: float = 0.25, batch_rows: int = 5000):
        self.url = url
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.written = 0
        self._queue: queue.Queue = queue.Queue()
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The log database, opened (and its tables created) on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = predlog.connect(self.url)
            return self._engine

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Queue prediction rows (see `predlog.write_predictions`); returns at once."""
        self._queue.put(rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False if that takes longer than `timeout`."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def record_feedback(
        self, prediction_id: str, outcome: int, user: str | None = None
    ) -> dict[str, Any] | None:
        """Store an observed outcome; None when the prediction is not in the log."""
        try:
            if not self._known(prediction_id):
                return None
            received_at = datetime.now(UTC)
            predlog.write_feedback(
                self.engine,
                [
                    {
                        "prediction_id": prediction_id,
                        "outcome": outcome,
                        "received_at": received_at,
                        "requested_by": user,
                    }
                ],
            )
        except SQLAlchemyError as exc:
            log.error("recording feedback failed: %s", predlog.safe_reason(exc))
            raise predlog.PredictionLogError("the prediction log is unavailable") from None
        return {"prediction_id": prediction_id, "outcome": outcome, "received_at": received_at.isoformat()}

    def _known(self, prediction_id: str) -> bool:
        """Whether a prediction is logged, after this worker's queue and other workers' next batch."""
        self.flush(timeout=FEEDBACK_WAIT_SECONDS)
        deadline = time.monotonic() + LOOKUP_SECONDS
        while not predlog.prediction_exists(self.engine, prediction_id):
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOOKUP_SECONDS / 6)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        waiters: list[threading.Event] = []
        stopping = False
        while not stopping:
            stopping = self._collect(pending, waiters)
            if pending and not self._write(pending):
                if not stopping:
                    time.sleep(RETRY_SECONDS)
                continue
            for waiter in waiters:
                waiter.set()
            waiters.clear()
        self._write_before_exit(pending, waiters)

    def _write_before_exit(self, pending: list[dict[str, Any]], waiters: list[threading.Event]) -> None:
        """Take whatever is still queued and try a few times to write it all."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, threading.Event):
                waiters.append(item)
        for attempt in range(CLOSE_ATTEMPTS):
            if not pending or self._write(pending):
                break
            if attempt < CLOSE_ATTEMPTS - 1:
                time.sleep(RETRY_SECONDS)
        if pending:
            log.error(
                "prediction log unavailable at shutdown: %d prediction rows were not written", len(pending)
            )
        for waiter in waiters:
            waiter.set()

    def _collect(self, pending: list[dict[str, Any]], waiters: list[threading.Event]) -> bool:
        """Move queued rows into `pending` (block for the first item); True once asked to stop."""
        try:
            item = self._queue.get(timeout=self.flush_seconds)
        except queue.Empty:
            return False
        while True:
            if item is _STOP:
                return True
            if isinstance(item, threading.Event):
                waiters.append(item)
            else:
                pending.extend(item)
            if len(pending) >= self.batch_rows:
                return False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _write(self, pending: list[dict[str, Any]]) -> bool:
        """Insert and clear `pending`; on a database error keep it (bounded) and return False."""
        try:
            self.written += predlog.write_predictions(self.engine, pending)
        except IntegrityError:
            self._write_one_by_one(pending)
        except Exception as exc:  # the thread must survive anything; rows stay queued
            log.error(
                "prediction log write of %d rows failed (will retry): %s",
                len(pending),
                predlog.safe_reason(exc),
            )
            if len(pending) > MAX_PENDING_ROWS:
                log.error("dropping the %d oldest unwritten prediction rows", len(pending) - MAX_PENDING_ROWS)
                del pending[: len(pending) - MAX_PENDING_ROWS]
            return False
        pending.clear()
        return True

    def _write_one_by_one(self, pending: list[dict[str, Any]]) -> None:
        """After a retried batch half-reached the database: insert each row, skipping those already there."""
        for row in pending:
            try:
                self.written += predlog.write_predictions(self.engine, [row])
            except IntegrityError:
                log.warning("prediction %s was already logged", row["prediction_id"])
