"""Every file a command writes fails the same way: one line naming the path and why, a non-zero
exit, nothing half-written; and scored rows always join back to their input by id."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from clinrisk import outputs
from clinrisk.cli import main
from clinrisk.errors import OutputError
from support import RAW_STROKE, VENV_BIN

pytestmark = pytest.mark.slow  # a trained champion (shared per worker)


@pytest.fixture
def run(trained_settings, monkeypatch):
    """Invoke the CLI on the shared trained state; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("CLINRISK_HOME", str(trained_settings.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(trained_settings.spec_dir))

    def invoke(*args: str):
        result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may create files in: root ignores mode bits, so it is also made immutable."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def _unwritable(kind: str, tmp_path: Path, read_only: Path) -> tuple[Path, str]:
    """An output path that cannot be written, and the reason the error must give."""
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    (tmp_path / "a-folder.csv").mkdir(exist_ok=True)
    return {
        "missing folder": (tmp_path / "no-such-dir" / "out.csv", "does not exist"),
        "folder as output": (tmp_path / "a-folder.csv", "it is a folder"),
        "file as folder": (a_file / "out.csv", "is not a folder"),
        "read-only folder": (read_only / "out.csv", "ermi"),  # Permission denied / Operation not permitted
    }[kind]


KINDS = ["missing folder", "folder as output", "file as folder", "read-only folder"]


def _assert_one_line_and_nothing_left(code: int, stderr: str, path: Path, reason: str, folder: Path) -> None:
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: cannot write {path}") and reason in lines[0]
    assert not [p for p in folder.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.parametrize("kind", KINDS)
def test_predict_output_that_cannot_be_written_is_one_line(run, tmp_path, read_only_dir, kind):
    """--output in a missing folder, onto a folder, under a file or in a read-only folder."""
    path, reason = _unwritable(kind, tmp_path, read_only_dir)
    code, stdout, stderr = run("predict", "--input", RAW_STROKE, "--output", path)
    _assert_one_line_and_nothing_left(code, stderr, path, reason, tmp_path)
    assert stdout == ""


@pytest.mark.parametrize("kind", KINDS)
def test_predict_rejects_that_cannot_be_written_fail_before_scoring(run, tmp_path, read_only_dir, kind):
    """--rejects is checked before any row is scored, so no output appears either."""
    path, reason = _unwritable(kind, tmp_path, read_only_dir)
    out = tmp_path / "out.csv"
    code, _, stderr = run(
        "predict", "--input", RAW_STROKE, "--output", out, "--skip-invalid", "--rejects", path
    )
    _assert_one_line_and_nothing_left(code, stderr, path, reason, tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("same", ["input", "rejects"])
def test_predict_never_writes_over_its_input_or_its_other_output(run, tmp_path, same):
    """Output == input (even through another spelling of the path) and output == rejects are refused."""
    source = tmp_path / "in.csv"
    shutil.copy(RAW_STROKE, source)
    before = source.read_bytes()
    other = tmp_path / "." / "in.csv"
    both = ["--output", tmp_path / "o.csv", "--rejects", tmp_path / "o.csv"]
    args = ["--output", other] if same == "input" else both
    code, _, stderr = run("predict", "--input", source, *args, "--skip-invalid")
    assert code == 1 and len(stderr.strip().splitlines()) == 1
    assert "cannot write" in stderr and ("input file" in stderr or "also the output" in stderr)
    assert source.read_bytes() == before and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("kind", ["missing folder", "file as folder", "read-only folder"])
def test_monitor_out_that_cannot_be_written_is_one_line(run, tmp_path, read_only_dir, kind):
    """`monitor --out` creates a missing reports folder, and fails in one line where it cannot."""
    path, _ = _unwritable(kind, tmp_path, read_only_dir)
    folder = path.parent if kind == "missing folder" else path
    code, stdout, stderr = run("monitor", "--current", RAW_STROKE, "--out", folder / "reports")
    if kind == "missing folder":
        assert code == 0 and (folder / "reports" / "index.html").exists()
        return
    assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"cannot write {folder / 'reports'}" in stderr and stdout == ""


def test_a_write_that_fails_half_way_leaves_no_file(run, trained_settings, tmp_path):
    """A file-size limit hit mid-output (as a full disk would) ends in one line and no file at all."""
    out = tmp_path / "out.csv"
    assert run("predict", "--input", RAW_STROKE, "--output", out)[0] == 0  # warms the model cache
    out.unlink()

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    env = {
        **os.environ,
        "CLINRISK_HOME": str(trained_settings.home),
        "CLINRISK_SPEC_DIR": str(trained_settings.spec_dir),
    }
    done = subprocess.run(
        [VENV_BIN / "clinrisk", "predict", "--input", RAW_STROKE, "--output", out, "--chunk-rows", "500"],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: cannot write {out}: File too large"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_scored_rows_keep_their_ids_exactly(run, tmp_path, raw_stroke, sep):
    """Ids like 000731, 0731 and 731, 20 digits, spaces and letters come back as written."""
    ids = ["000731", "0731", "731", "004402", "12345678901234567891", "A 12", "x-9", "1e5"]
    frame = raw_stroke.head(len(ids)).copy()
    frame["id"] = ids
    frame["note"] = ["007", "", "n/a", "1.50", "a", "b", "c", "d"]
    frame.to_csv(tmp_path / "in.csv", index=False, sep=sep, decimal="," if sep == ";" else ".")
    code, _, stderr = run("predict", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    assert code == 0, stderr
    scored = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert scored["id"].tolist() == ids
    assert scored["note"].tolist() == ["007", "", "n/a", "1.50", "a", "b", "c", "d"]


def test_atomic_path_removes_the_temporary_file_on_any_error(tmp_path):
    """A failed write leaves neither the target nor a temporary file; a good one has normal permissions."""
    target = tmp_path / "t.txt"
    with pytest.raises(RuntimeError), outputs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    outputs.write_text(target, "whole")
    assert target.read_text() == "whole" and (target.stat().st_mode & 0o777) == 0o666 & ~_umask()
    with pytest.raises(OutputError, match=f"cannot write {target / 'x'}: {target} is not a folder"):
        outputs.write_text(target / "x", "y")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
