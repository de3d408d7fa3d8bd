"""Profile POST /predict inside real gunicorn workers, ours and the hello-world floor.

Starts `clinrisk serve` (1 worker, the service's gunicorn configuration plus cProfile,
`profile_worker_conf.py`) and the hello-world app the same way, drives each with wrk for a few
seconds (1 connection, real patients), stops them, and prints each worker's top functions by
own time and the clinrisk functions by cumulative time, per request.

    .venv/bin/python benchmarks/worker_profile.py              # trains a champion; updates RESULTS.md
    .venv/bin/python benchmarks/worker_profile.py --home DIR   # DIR's champion instead
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
from serving import WRK_SCRIPT, parse_wrk, sample_records

CONF = str(common.BENCH_DIR / "profile_worker_conf.py")


def command_for(app: str, port: int, chdir: Path | None) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "--config", f"python:{Path(CONF).stem}", "--bind",
               f"127.0.0.1:{port}", "--workers", "1"]  # fmt: skip
    return [*command, *(["--chdir", str(chdir)] if chdir else []), app]


def server_env(home: Path, profile_dir: Path) -> dict[str, str]:
    env = common.bench_env(home, PROFILE_DIR=str(profile_dir), CLINRISK_AUTH_ENABLED="true")
    env["PYTHONPATH"] = os.pathsep.join([str(common.BENCH_DIR), env.get("PYTHONPATH", "")])
    return env


def drive(port: int, bodies: Path, seconds: float, authorization: str) -> dict:
    command = [
        "wrk",
        "-t1",
        "-c1",
        f"-d{int(seconds)}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}/predict",
    ]
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_AUTHORIZATION": authorization}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return parse_wrk(result.stdout)


# The request's parts, as (label, file, function) in cProfile's statistics of a worker.
PARTS = (
    ("whole WSGI request (Flask dispatch, hooks, response)", "app.py", "wsgi_app"),
    ("POST /predict view", "api.py", "predict"),
    ("read + parse the JSON body", "schemas.py", "json_body"),
    ("authenticate the API key", "auth.py", "authenticate"),
    ("validate the record (pydantic)", "schemas.py", "validate_records"),
    ("score: one record, lean scorer, calibration, ids", "api.py", "score"),
    ("  of which the TreeEnsemble session run", "onnxruntime_inference_collection.py", "run"),
    ("  of which preprocessing (one record, Python floats)", "numpy_scorer.py", "row"),
    ("  of which uuid4 (os.urandom)", "uuid.py", "uuid4"),
    ("journal + log queue (submit)", "logwriter.py", "submit"),
    ("metrics (timer, counters, histogram)", "metrics.py", "_record"),
    ("gunicorn: handle one connection (recv, parse, send, close)", "sync.py", "handle"),
)


def cumulative_ms(stats: pstats.Stats, file: str, function: str, requests: int) -> float | None:
    found = [row[3] for (path, _, name), row in stats.stats.items() if name == function and path == file]
    return sum(found) * 1e3 / requests if found else None


def report(profile_dir: Path, requests: int) -> tuple[pstats.Stats, str]:
    out = io.StringIO()
    stats = pstats.Stats(*[str(p) for p in profile_dir.glob("worker-*.prof")], stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(20)
    text = out.getvalue()
    return stats, text[text.index("ncalls") :] if "ncalls" in text else text


def profile(app: str, chdir: Path | None, args, records: list[dict], port: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        profile_dir = Path(tmp)
        bodies = profile_dir / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps(r) for r in records) + "\n")
        log = profile_dir / "server.log"
        # A free port each time, and our own process checked while waiting: a port another
        # engineer's server holds would otherwise be profiled in its place.
        with common.running(
            command_for(app, port, chdir), server_env(args.home, profile_dir), log
        ) as process:
            common.wait_for_http(f"http://127.0.0.1:{port}/ready", process, log, timeout=180)
            warmup = drive(port, bodies, 1, args.authorization)
            result = drive(port, bodies, args.seconds, args.authorization)
        # The profile covers the worker's whole life: every request it answered counts.
        requests = warmup["requests"] + result["requests"] + 1
        stats, top = report(profile_dir, requests)
        parts = {label: cumulative_ms(stats, f, fn, requests) for label, f, fn in PARTS}
        return {"requests": requests, "wrk": result, "parts": parts, "top": top}


def render(ours: dict, floor: dict, args) -> str:
    rows = []
    for label, _, _ in PARTS:
        mine, base = ours["parts"][label], floor["parts"][label]
        rows.append([label, "-" if mine is None else f"{mine:.3f}", "-" if base is None else f"{base:.3f}"])
    rate = {
        name: m["wrk"]["requests"] / (m["wrk"]["duration_us"] / 1e6)
        for name, m in (("ours", ours), ("floor", floor))
    }
    return "\n".join(
        [
            "## Serving: where one POST /predict goes inside a gunicorn worker",
            "",
            common.run_stamp(),
            "",
            "One worker each (the service's gunicorn configuration plus cProfile over the worker's life, "
            f"`profile_worker_conf.py`), driven by wrk with 1 connection for {args.seconds} s, real "
            "patients, with an API key (authentication on, as by default). "
            f"Ours answered {rate['ours']:,.0f} req/s, the hello-world floor "
            f"{rate['floor']:,.0f} req/s "
            f"(ratio {rate['ours'] / rate['floor']:.2f}) under the profiler. Figures are wall milliseconds "
            "per request, cumulative, inflated by the profiler and by other jobs on the machine (a call that "
            "releases the GIL or blocks, such as a socket call or the ONNX run, is charged the time the "
            "worker waits to be scheduled again): compare rows within a column and ours with the floor, "
            "not with other runs.",
            "",
            common.markdown_table(["part of the request", "ours (ms/request)", "floor (ms/request)"], rows),
            "",
            "<details><summary>Our worker, top 20 by own time</summary>",
            "",
            "```text",
            ours["top"].strip(),
            "```",
            "",
            "</details>",
            "",
            "<details><summary>The floor's worker, top 20 by own time</summary>",
            "",
            "```text",
            floor["top"].strip(),
            "```",
            "",
            "</details>",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_home_argument(parser)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 3 s each, written under .work/.")
    args = parser.parse_args()
    if args.quick and args.seconds == parser.get_default("seconds"):  # an explicit --seconds wins
        args.seconds = 3
    common.exit_on_sigterm()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (tools/system-packages.sh does it)")
    records = sample_records(common.load_spec(), 500, seed=0)
    with common.work_dir("worker-profile") as tmp:
        args.home = common.champion_home(args.home, Path(tmp))
        args.authorization = f"Bearer {common.api_key(args.home)}"  # ours checks it; the floor ignores it
        ours = profile("clinrisk.web:create_app()", None, args, records, common.free_port())
        floor = profile("hello_app:create_app()", common.BENCH_DIR, args, records, common.free_port())
    body = render(ours, floor, args)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "worker-profile", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
