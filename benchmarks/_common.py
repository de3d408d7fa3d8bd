"""Helpers shared by the benchmark scripts: results file, machine, data, processes, timing.

Nothing here runs at import. Every script writes only its own section of RESULTS.md,
between `<!-- name:start -->` and `<!-- name:end -->` markers, so scripts can run alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
WORK_DIR = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "RESULTS.md"
QUICK_RESULTS = WORK_DIR / "RESULTS-quick.md"
VENV_BIN = Path(sys.executable).parent
SPEC_PATH = REPO / "models" / "stroke.yaml"
SECTIONS = (
    "machine",
    "threshold",
    "models",
    "serving",
    "worker-profile",
    "startup",
    "journal",
    "login-flood",
    "batch",
    "train",
    "first-start",
    "retrain",
    "proxy",
)
PACKAGES = ("scikit-learn", "numpy", "pandas", "mlflow", "prefect", "flask", "gunicorn", "onnxruntime")
HEADER = """# Benchmark results

Written by the scripts in `benchmarks/` (`make bench` runs them all). Each script rewrites only
its own section, and each section says when and how it was produced. Figures measured on a
busy machine are noisy: compare numbers from the same run, not across runs.
"""


# --- results file -----------------------------------------------------------------------


def results_file(text: str) -> Path:
    """argparse type of `--results`: a file to write, refused before the run if it is a directory."""
    import argparse

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file such as {path / 'RESULTS.md'}")
    return path


def state_dir(text: str) -> Path:
    """argparse type of `--home`: a state directory (created and trained into when missing)."""
    import argparse

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return path


def add_home_argument(parser) -> None:
    """`--home DIR`: a state directory to reuse (its champion), created and trained into if it has none."""
    parser.add_argument(
        "--home",
        type=state_dir,
        default=None,
        help="State directory to reuse (its champion); created and trained into when it has none.",
    )


def results_path(explicit: Path | None, quick: bool) -> Path:
    """Where a run writes: the given file, else RESULTS.md (smoke runs go under .work/)."""
    if explicit is not None:
        return explicit
    return QUICK_RESULTS if quick else RESULTS


def update_section(path: Path, name: str, body: str) -> None:
    """Replace the section `name` of a results file (creating file or section as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- {name}:start -->\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.DOTALL)
    found = pattern.search(text)
    text = pattern.sub(lambda _: block, text) if found else _insert_in_order(text, name, block)
    path.write_text(text.rstrip() + "\n")


def _insert_in_order(text: str, name: str, block: str) -> str:
    """Put a new section before the first later section that exists, else at the end."""
    later = SECTIONS[SECTIONS.index(name) + 1 :] if name in SECTIONS else ()
    for other in later:
        marker = f"<!-- {other}:start -->"
        if marker in text:
            return text.replace(marker, f"{block}\n\n{marker}", 1)
    return f"{text.rstrip()}\n\n{block}\n"


def write_results(path: Path, name: str, body: str) -> None:
    """Write a script's section and refresh the machine description beside it."""
    update_section(path, "machine", machine_section())
    update_section(path, name, body)
    print(f"wrote section '{name}' of {path}")


def save_raw(name: str, payload: object) -> Path:
    """Keep a run's raw measurements as JSON under .work/ (dataclasses and numpy values included)."""
    import dataclasses
    import json

    def default(value):
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        return str(value)

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, default=default, indent=1))
    return path


def run_stamp(argv: list[str] | None = None) -> str:
    """One line saying when, where and with which command a section was produced."""
    argv = sys.argv if argv is None else argv
    command = " ".join([Path(argv[0]).name, *argv[1:]])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"_Run {now} on {cpu_model()} ({os.cpu_count()} cores) with `{command}` at {git_commit()}; "
        f"load average {load_average()} (1, 5, 15 min) when it finished._"
    )


def git_commit() -> str:
    """The checked-out commit (short hash, `+changes` when the tree differs), or 'an unknown commit'."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "an unknown commit"
    return f"commit {commit}" + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def total_memory_gb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def machine_section() -> str:
    """Markdown describing the machine and software the latest figures came from."""
    versions = ", ".join(f"{name} {v}" for name, v in package_versions().items())
    memory = total_memory_gb()
    return "\n".join(
        [
            "## Machine",
            "",
            f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores "
            f"({len(os.sched_getaffinity(0))} usable by this process)",
            f"- RAM: {f'{memory:.1f} GB' if np.isfinite(memory) else not_measured('no /proc/meminfo')}; "
            f"OS: {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}; {versions}",
            f"- OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'unset')} (scikit-learn's gradient "
            "boosting uses OpenMP; on a busy machine its threads slow it down many times over)",
        ]
    )


# --- data ---------------------------------------------------------------------------------


def load_spec():
    from clinrisk.spec import load_spec as _load

    return _load(SPEC_PATH)


def real_data(spec=None) -> pd.DataFrame:
    """The real stroke file, validated against the spec (checksum checked)."""
    from clinrisk.data import load_training_data

    spec = spec or load_spec()
    return load_training_data(spec, REPO / spec.data.path, expected_sha256=spec.data.sha256)


def resample(frame: pd.DataFrame, rows: int, seed: int, noise: float = 0.0, spec=None) -> pd.DataFrame:
    """Draw `rows` rows with replacement; `noise` jitters numeric columns by that share of their sd.

    Ids are renumbered so the result stays a valid training or scoring file, and jittered
    values are clipped into the spec's declared ranges.
    """
    spec = spec or load_spec()
    rng = np.random.default_rng(seed)
    out = frame.iloc[rng.integers(0, len(frame), size=rows)].reset_index(drop=True)
    if spec.id_column and spec.id_column in out.columns:
        out[spec.id_column] = np.arange(1, rows + 1)
    if noise > 0:
        for name, feature in spec.features.items():
            if feature.type != "numeric":
                continue
            column = out[name].astype(float)
            jitter = rng.normal(0.0, noise * np.nanstd(column.to_numpy()), size=rows)
            out[name] = (column + jitter).clip(feature.min, feature.max).round(2)
    return out


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def work_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A fresh, self-deleting state directory under benchmarks/.work (git-ignored)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir=WORK_DIR)


def bench_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for clinrisk subprocesses: state in `home`, no analytics, no auth."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CLINRISK_"))}
    env.update(
        CLINRISK_HOME=str(home),
        CLINRISK_SPEC_DIR=str(REPO / "models"),
        CLINRISK_AUTH_ENABLED="false",
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PYTHONUNBUFFERED="1",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks stop every server and child we started."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a process group started with start_new_session=True: TERM, then KILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run a server in its own process group and always stop the whole group afterwards."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop_process(process)


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> float:
    """Poll `url` until it returns 200; fail early, showing the log, if the server dies."""
    import requests

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log_path)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class Measured:
    """What one measured subprocess did: exit code, wall time, peak memory and output."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def measure(command: list[str], env: dict[str, str], timeout: float = 1800.0) -> Measured:
    """Run a command to completion; its peak RSS comes from wait4 (the process and its reaped children)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=err, start_new_session=True)
        try:
            status, usage = _wait_with_timeout(process, timeout)
        except BaseException:
            stop_process(process)
            raise
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        return Measured(
            returncode=os.waitstatus_to_exitcode(status),
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss / 1024,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _wait_with_timeout(process: subprocess.Popen, timeout: float) -> tuple[int, resource.struct_rusage]:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args[:3]} ran longer than {timeout:.0f} s")
        time.sleep(0.05)


def check(result: Measured, what: str) -> Measured:
    """Fail with the command's own error output when it did not succeed."""
    if result.returncode != 0:
        raise RuntimeError(f"{what} exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def train_champion(home: Path, data_path: Path | None = None) -> dict:
    """Train and register the stroke model with `clinrisk train` into a fresh state directory."""
    import json

    command = [str(VENV_BIN / "clinrisk"), "train"]
    if data_path is not None:
        command += ["--data", str(data_path)]
    result = check(measure(command, bench_env(home), timeout=900), "clinrisk train")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    if not summary.get("promoted"):
        raise RuntimeError(f"the trained model was not promoted to champion: {summary}")
    return summary


def champion_home(given: Path | None, scratch: Path) -> Path:
    """The state directory to benchmark: `given` (created, and trained into when it has no
    registry yet) or the scratch directory with a freshly trained champion."""
    home = (given or scratch).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "mlflow.db").exists():
        print(f"training the champion into {home} ...", flush=True)
        train_champion(home)
    return home


def api_key(home: Path, user: str = "bench") -> str:
    """A new API key of `user` (created with a random password if needed) in `home`'s users file,
    so a benchmark exercises authentication as the service runs by default."""
    import json
    import secrets

    command = [str(VENV_BIN / "clinrisk"), "user", "add", f"{user}-{secrets.token_hex(4)}", "--api-key"]
    done = subprocess.run(
        command, input=secrets.token_urlsafe(24) + "\n", env=bench_env(home), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"clinrisk user add failed ({done.returncode}): {done.stderr[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["api_key"]


def not_measured(reason: str) -> str:
    """What a report prints in place of a figure that was not measured: never a bare `nan`."""
    return f"not measured ({reason})"


def figure(value: float | None, spec: str, reason: str) -> str:
    """`value` formatted with `spec`, or `not_measured(reason)` when it is None or NaN."""
    if value is None or not np.isfinite(value):
        return not_measured(reason)
    return format(value, spec)


def ratio(a: float, b: float) -> str:
    """a / b as text, or 'n/a' when b is zero or missing."""
    return f"{a / b:.2f}x" if b and np.isfinite(b) and np.isfinite(a) else "n/a"
