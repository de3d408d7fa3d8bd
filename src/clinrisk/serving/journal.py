"""A local journal of answered predictions, so that a killed worker loses none of them.

Each worker appends the rows of a prediction to its own segment file before the answer is sent
(one buffered write, no fsync: the rows survive a crash of the process, not of the machine).
The writer thread closes the segment every cycle and deletes it once its rows are in the
prediction log. A segment left behind by a worker that died (killed, out of memory) is replayed
into the log by the next worker that starts, or by any live worker within a few seconds.

Ownership is an exclusive `flock` on the open segment: the kernel drops it when its process
dies, however it dies, so a segment whose lock can be taken has no living owner. The journal
folder must therefore be on a local file system (flock is unreliable over NFS).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from clinrisk.wording import count_of

log = logging.getLogger(__name__)

SUFFIX = ".journal"
OPENING = ".opening"  # a segment being created: locked, then renamed to *.journal
ABANDONED_AFTER_SECONDS = 60.0  # an unlocked *.opening this old belongs to a process that died


class Segment:
    """One journal file, open for appending and locked by this process while it is open."""

    def __init__(self, path: Path, handle):
        self.path = path
        self._handle = handle
        self.rows = 0

    @classmethod
    def create(cls, directory: Path) -> Segment:
        """Open and lock a new segment under a name replay ignores, then give it its real name.

        Locking under the final name would leave a moment when another worker could take the
        unlocked new file for an orphan and delete it.
        """
        directory.mkdir(parents=True, exist_ok=True)
        opening = directory / f"{os.getpid()}-{uuid.uuid4().hex}{OPENING}"
        handle = open(opening, "ab", buffering=0)  # noqa: SIM115 - held open: the lock lives with it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = opening.with_suffix(SUFFIX)
        os.rename(opening, path)  # same inode: the lock stays
        return cls(path, handle)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write the rows as JSON lines in one system call (atomic for the appending file)."""
        self._handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self.rows += len(rows)

    def release(self) -> None:
        """Delete the segment (its rows are logged) and drop the lock."""
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        self._handle.close()


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        row = orjson.loads(line)
        row["created_at"] = datetime.fromisoformat(row["created_at"])
        return row
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # the last line of a process killed mid-write


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The prediction rows of a segment, skipping a line cut short by a crash."""
    rows = [_decode(line) for line in path.read_bytes().splitlines() if line.strip()]
    skipped = sum(r is None for r in rows)
    if skipped:
        log.warning("journal %s: %s skipped", path.name, count_of(skipped, "unreadable line"))
    return [r for r in rows if r is not None]


def orphans(directory: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """Yield (path, rows) of each segment with no living owner, locked while the caller handles it.

    The caller deletes the file once its rows are safe; a segment it leaves is unlocked and
    found again on the next call.
    """
    if not directory.is_dir():
        return
    _remove_abandoned_openings(directory)
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the lock must outlive this statement
        except FileNotFoundError:
            continue  # released or replayed by another worker meanwhile
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()  # a living worker owns it
            continue
        try:
            if path.exists():  # not deleted between listing and locking
                yield path, read_rows(path)
        finally:
            handle.close()


def _remove_abandoned_openings(directory: Path) -> None:
    """Delete segments whose process died while creating them (they hold no rows yet).

    Only old ones: between `open` and `flock` a segment being created is unlocked, and a sweep
    in that instant (another worker's, or this worker's own writer thread) deleted it.
    """
    for path in directory.glob(f"*{OPENING}"):
        try:
            if time.time() - path.stat().st_mtime < ABANDONED_AFTER_SECONDS:
                continue
            with open(path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
        except (BlockingIOError, FileNotFoundError):
            continue  # being created right now, or already gone


class Journal:
    """The current segment of this process; rotated by the writer thread every cycle."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._segment: Segment | None = None
        self._pid = os.getpid()

    def append(self, rows: list[dict[str, Any]]) -> None:
        if self._segment is None or self._pid != os.getpid():
            self._segment, self._pid = Segment.create(self.directory), os.getpid()
        self._segment.append(rows)

    def rotate(self) -> Segment | None:
        """Close the current segment to new rows and return it (None when nothing was appended)."""
        segment, self._segment = self._segment, None
        return segment
