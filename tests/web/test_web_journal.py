"""The journal of answered predictions: nothing answered is lost when a worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from test_web_logwriter import rows
from web_support import rows_in

from clinrisk import predlog
from clinrisk.serving import journal
from clinrisk.serving.logwriter import PredictionLogWriter

# A worker that answers `n` predictions, says so, and waits to be killed before it writes any.
DOOMED_WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{tests!r}, {tests!r} + "/.."]
    from test_web_logwriter import rows
    from clinrisk.serving.logwriter import PredictionLogWriter
    writer = PredictionLogWriter({url!r}, flush_seconds=3600, journal_dir={journal!r})
    writer.start()
    for size in {sizes!r}:
        writer.submit(rows(size))
    print("answered", flush=True)
    time.sleep(600)
    """
)


def _answer_and_die(tmp_path: Path, sizes: list[int]) -> None:
    """Run a worker that journals rows, then kill -9 it with every row still queued."""
    script = DOOMED_WORKER.format(
        tests=str(Path(__file__).parent), url=_url(tmp_path), journal=str(tmp_path / "journal"), sizes=sizes
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "answered"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(30)
    assert worker.returncode == -signal.SIGKILL


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


def _segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "journal").glob(f"*{journal.SUFFIX}"))


def test_rows_of_a_killed_worker_are_replayed_by_the_next_one(tmp_path):
    """A worker killed with 1, 5 and 120 answered rows queued: the next worker writes all 126."""
    _answer_and_die(tmp_path, [1, 5, 120])
    assert rows_in(predlog.connect(_url(tmp_path)), predlog.predictions) == 0
    assert len(_segments(tmp_path)) == 1
    successor = PredictionLogWriter(_url(tmp_path), journal_dir=tmp_path / "journal")
    assert successor.replay_orphans() == 126
    assert rows_in(successor.engine, predlog.predictions) == 126 and _segments(tmp_path) == []


def test_the_writer_thread_replays_at_start(tmp_path):
    """Starting a writer is enough: its thread replays what a dead worker left."""
    _answer_and_die(tmp_path, [7])
    successor = PredictionLogWriter(_url(tmp_path), flush_seconds=0.05, journal_dir=tmp_path / "journal")
    successor.start()
    assert successor.flush(timeout=20)
    successor.close()
    assert successor.replayed == 7 and rows_in(successor.engine, predlog.predictions) == 7


def test_a_living_workers_journal_is_left_alone(tmp_path):
    """Another worker never replays rows whose worker is alive and will write them itself."""
    owner = PredictionLogWriter(_url(tmp_path), flush_seconds=3600, journal_dir=tmp_path / "journal")
    owner.start()
    owner.submit(rows(3))
    other = PredictionLogWriter(_url(tmp_path), journal_dir=tmp_path / "journal")
    assert other.replay_orphans() == 0 and len(_segments(tmp_path)) == 1
    owner.close()
    assert rows_in(owner.engine, predlog.predictions) == 3 and _segments(tmp_path) == []


def test_segments_are_deleted_once_written(tmp_path):
    """In steady running the journal holds only what is not yet in the log."""
    writer = PredictionLogWriter(_url(tmp_path), flush_seconds=0.05, journal_dir=tmp_path / "journal")
    writer.start()
    for _ in range(5):
        writer.submit(rows(10))
        assert writer.flush(timeout=10)
    writer.submit(rows(1))  # ensures the previous segment's release marker has been processed
    assert writer.flush(timeout=10) and len(_segments(tmp_path)) <= 1
    writer.close()
    assert rows_in(writer.engine, predlog.predictions) == 51 and _segments(tmp_path) == []


def test_a_line_cut_by_the_crash_is_skipped_and_duplicates_are_not_written_twice(tmp_path):
    """A half-written last line is skipped; rows already in the log are not inserted again."""
    _answer_and_die(tmp_path, [4])
    (segment,) = _segments(tmp_path)
    logged = journal.read_rows(segment)[:2]
    predlog.write_predictions(predlog.connect(_url(tmp_path)), logged)
    with segment.open("ab") as handle:
        handle.write(b'{"prediction_id": "cut sho')
    successor = PredictionLogWriter(_url(tmp_path), journal_dir=tmp_path / "journal")
    assert successor.replay_orphans() == 4
    assert rows_in(successor.engine, predlog.predictions) == 4


def test_an_unavailable_log_keeps_the_journal_for_later(tmp_path):
    """When the database is down at replay the segment stays, and is replayed once it is back."""
    _answer_and_die(tmp_path, [6])
    blocked = tmp_path / "not-yet"
    blocked.write_text("a file where the database directory should be")
    down = PredictionLogWriter(f"sqlite:///{blocked / 'log.db'}", journal_dir=tmp_path / "journal")
    assert down.replay_orphans() == 0 and len(_segments(tmp_path)) == 1
    successor = PredictionLogWriter(_url(tmp_path), journal_dir=tmp_path / "journal")
    assert successor.replay_orphans() == 6 and _segments(tmp_path) == []


def test_a_segment_is_never_taken_for_an_orphan_while_it_is_created(tmp_path):
    """A new segment is locked before it has the name replay looks for; an abandoned one is removed."""
    directory = tmp_path / "journal"
    directory.mkdir()
    abandoned = directory / f"999999-dead{journal.OPENING}"
    abandoned.write_bytes(b"")
    long_ago = time.time() - 2 * journal.ABANDONED_AFTER_SECONDS
    os.utime(abandoned, (long_ago, long_ago))
    being_created = directory / f"999998-new{journal.OPENING}"  # opened, not yet locked
    being_created.write_bytes(b"")
    segment = journal.Segment.create(directory)
    assert segment.path.suffix == journal.SUFFIX
    assert list(journal.orphans(directory)) == [] and segment.path.exists() and not abandoned.exists()
    assert being_created.exists()  # a sweep at that instant once deleted it under its creator
    segment.release()


def test_an_unwritable_journal_never_fails_a_prediction(tmp_path, caplog):
    """If the journal folder cannot be written, rows are still queued and logged, with one error line."""
    blocked = tmp_path / "journal"
    blocked.write_text("a file where the journal folder should be")
    writer = PredictionLogWriter(_url(tmp_path), flush_seconds=0.05, journal_dir=blocked)
    writer.start()
    for _ in range(3):
        writer.submit(rows(2))
    assert writer.flush(timeout=20)
    writer.close()
    assert rows_in(writer.engine, predlog.predictions) == 6
    assert len([r for r in caplog.records if "cannot write the prediction journal" in r.getMessage()]) == 1
