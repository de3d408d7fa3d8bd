"""Write served predictions to the prediction log in batches, from a thread off the request path.

Requests only put rows on a queue. The writer thread inserts them in batches through
`clinrisk.predlog`, at most one transaction (and one journal segment) per `flush_seconds`: it
sleeps rather than waits on the queue meanwhile, so a request never wakes it. Written a row at a
time, under load each request cost a transaction, a segment file and a thread switch, and the
thread took the GIL whenever the request thread released it (a file write, the scorer's native
call). `flush()` and `close()` cut the wait short. Rows that fail to insert (database down)
are kept and retried. `close()` drains the queue before returning, so a graceful shutdown loses
nothing. With a journal (`clinrisk.serving.journal`) the rows are also appended to a local file
before the answer is sent, so a worker killed with rows still queued loses nothing either: the
next worker replays them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from clinrisk import predlog
from clinrisk.serving import journal as journals
from clinrisk.wording import count_of

log = logging.getLogger(__name__)

_STOP = object()
RETRY_SECONDS = 1.0
CLOSE_ATTEMPTS = 3
MAX_PENDING_ROWS = 200_000
FEEDBACK_WAIT_SECONDS = 5.0
LOOKUP_SECONDS = 0.6  # other workers write their queue every flush_seconds (0.25 s)
REPLAY_SECONDS = 5.0  # how often a worker looks for segments of workers that died


class _Release:
    """Queued after the rows of a journal segment: once they are written, the segment goes."""

    def __init__(self, segment: journals.Segment):
        self.segment = segment

    def set(self) -> None:
        self.segment.release()


_Waiter = threading.Event | _Release


class PredictionLogWriter:
    """A queue of prediction rows and the thread that persists them."""

    def __init__(
        self,
        url: str,
        *,
        flush_seconds: float = 0.25,
        batch_rows: int = 5000,
        journal_dir: Path | None = None,
    ):
        self.url = url
        self.journal = journals.Journal(journal_dir) if journal_dir is not None else None
        self.replayed = 0
        self._submit_lock = threading.Lock()
        self._journal_failed = False
        self._next_replay = 0.0
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.written = 0
        self._queue: queue.Queue = queue.Queue()
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._engine_lock = threading.Lock()
        self._last_write = 0.0  # time.monotonic() of the last batch
        self._hurry = threading.Event()  # set by flush() and close(): write without lingering

    @property
    def engine(self) -> Engine:
        """The log database, opened (and its tables created) on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = predlog.connect(self.url)
            return self._engine

    def start(self) -> None:
        self._last_write = time.monotonic()  # the first batch gathers for one interval too
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Journal and queue prediction rows (see `predlog.write_predictions`); returns at once."""
        if self.journal is None:
            self._queue.put(rows)
            return
        with self._submit_lock:  # a segment's release marker must follow all of its rows
            self._journal(rows)
            self._queue.put(rows)

    def _journal(self, rows: list[dict[str, Any]]) -> None:
        """Append to the journal; if the disk refuses, answer anyway (logged once) and keep queueing."""
        try:
            self.journal.append(rows)
            self._journal_failed = False
        except OSError as exc:
            if not self._journal_failed:
                log.error(
                    "cannot write the prediction journal in %s (%s): predictions are still logged, "
                    "but a worker killed now loses its queued rows",
                    self.journal.directory,
                    exc,
                )
            self._journal_failed = True

    def _rotate_journal(self) -> None:
        """Start a new segment; the old one is deleted once the rows queued before it are written."""
        if self.journal is None:
            return
        with self._submit_lock:
            segment = self.journal.rotate()
            if segment is not None:
                self._queue.put(_Release(segment))

    def replay_orphans(self) -> int:
        """Write the rows journaled by workers that died; returns how many rows were replayed."""
        if self.journal is None:
            return 0
        replayed = 0
        for path, rows in journals.orphans(self.journal.directory):
            count = len(rows)
            if rows and not self._write(rows):
                break  # the log is down: the segment stays for the next attempt
            path.unlink(missing_ok=True)
            replayed += count
            replayed_text = count_of(count, "prediction")
            log.warning("replayed %s journaled by a stopped worker (%s)", replayed_text, path.name)
        self.replayed += replayed
        return replayed

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False if that takes longer than `timeout`."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        return done.wait(timeout)

    def record_feedback(
        self, prediction_id: str, outcome: float, user: str | None = None, model_name: str | None = None
    ) -> dict[str, Any] | None:
        """Store an observed outcome (0/1, or a regression's value); None when the prediction is not
        in the log (or was not made by `model_name`, when one is given)."""
        try:
            if not self._known(prediction_id, model_name):
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

    def _known(self, prediction_id: str, model_name: str | None = None) -> bool:
        """Whether a prediction is logged, after this worker's queue and other workers' next batch."""
        self.flush(timeout=FEEDBACK_WAIT_SECONDS)
        deadline = time.monotonic() + LOOKUP_SECONDS
        while not predlog.prediction_exists(self.engine, prediction_id, model_name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOOKUP_SECONDS / 6)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread."""
        if self._thread is None:
            return
        self._rotate_journal()
        self._queue.put(_STOP)
        self._hurry.set()
        self._thread.join(timeout)
        self._thread = None
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        waiters: list[_Waiter] = []
        stopping = False
        while not stopping:
            self._replay_when_due()
            stopping = self._collect(pending, waiters)
            if pending and not self._write(pending):
                if not stopping:
                    time.sleep(RETRY_SECONDS)
                continue
            self._last_write = time.monotonic()
            for waiter in waiters:
                waiter.set()
            waiters.clear()
            if not stopping:
                self._rotate_journal()
        self._write_before_exit(pending, waiters)

    def _replay_when_due(self) -> None:
        if self.journal is None or time.monotonic() < self._next_replay:
            return
        self._next_replay = time.monotonic() + REPLAY_SECONDS
        try:
            self.replay_orphans()
        except Exception as exc:  # the thread must survive anything; segments stay for next time
            log.error("journal replay failed (will retry): %s", exc)

    def _write_before_exit(self, pending: list[dict[str, Any]], waiters: list[_Waiter]) -> None:
        """Take whatever is still queued and try a few times to write it all."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, threading.Event | _Release):
                waiters.append(item)
        for attempt in range(CLOSE_ATTEMPTS):
            if not pending or self._write(pending):
                break
            if attempt < CLOSE_ATTEMPTS - 1:
                time.sleep(RETRY_SECONDS)
        if pending:
            log.error(
                "prediction log unavailable at shutdown: %d prediction rows were not written%s",
                len(pending),
                " (kept in the journal for the next start)" if self.journal else "",
            )
        for waiter in waiters:
            if isinstance(waiter, _Release) and pending:
                waiter.segment.close()  # unlocked and kept: the next worker replays it
            else:
                waiter.set()

    def _collect(self, pending: list[dict[str, Any]], waiters: list[_Waiter]) -> bool:
        """Move queued rows into `pending`; True once asked to stop.

        Blocks for the first item, then lets rows gather until `flush_seconds` have passed since
        the last batch (or the start): a row after a quiet spell is written at once.
        """
        try:
            item = self._queue.get(timeout=self.flush_seconds)
        except queue.Empty:
            return False
        linger = self._last_write + self.flush_seconds - time.monotonic()
        if item is not _STOP and linger > 0:
            self._hurry.wait(linger)
        self._hurry.clear()  # before draining: a flush() queued after this point hurries the next batch
        while True:
            if item is _STOP:
                return True
            if isinstance(item, threading.Event | _Release):
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
