"""Writing the files a command produces: scored output, rejects, reports, `--out` folders.

Every write goes through here so that each failure reads the same way: one line naming the
path and the operating system's reason (`OutputError`, a non-zero exit in the CLI), and a
file either appears whole or not at all (it is written beside its target and renamed over it).
Missing parent folders are NOT created for files the user names (`--output`, `--rejects`);
report folders, which the product lays out itself, are.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from clinrisk.errors import OutputError


def cannot_write(path: Path, reason: str) -> OutputError:
    return OutputError(f"cannot write {path}: {reason}")


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def check_writable(path: Path, inputs: Sequence[Path] = ()) -> Path:
    """Fail before any work when `path` cannot become a file: raises OutputError naming why.

    Checks that the parent folder exists and is a folder, that `path` is not a folder and that it
    is none of `inputs` (writing over the file being read would destroy it half-way), and creates
    and removes a temporary file beside it, the only test of permission that holds for root too.
    """
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise cannot_write(path, f"folder {parent} does not exist")
    if not parent.is_dir():
        raise cannot_write(path, f"{parent} is not a folder")
    if path.is_dir():
        raise cannot_write(path, "it is a folder")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise cannot_write(path, f"it is the input file {source}")
    temporary_beside(path).unlink()  # the folder really takes new files (permissions, read-only disk)
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def temporary_beside(path: Path) -> Path:
    """Create an empty hidden temporary file in `path`'s folder (same file system: rename is atomic)."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, _reason(exc)) from None
    os.close(handle)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes it 0600; the result should read like any new file
    return Path(name)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def commit(tmp: Path, path: Path) -> None:
    """Move a finished temporary file over `path` in one step."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, _reason(exc)) from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    An OSError while writing becomes OutputError naming `path` and the reason.
    """
    path = check_writable(path)
    tmp = temporary_beside(path)
    try:
        yield tmp
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, _reason(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, path)


def write_text(path: Path, text: str) -> Path:
    """Write a whole UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def make_folder(path: Path) -> Path:
    """Create a folder the product lays out (parents included), or fail naming it and why."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise cannot_write(path, "it is a file, not a folder") from None
    except OSError as exc:
        raise cannot_write(path, _reason(exc)) from None
    return path
