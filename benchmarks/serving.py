"""Serving: `clinrisk serve` against its own floor and against `mlflow models serve`, under wrk.

Trains a champion into a fresh state directory, then starts three servers at once on 127.0.0.1,
each with one worker per core: `clinrisk serve` (gunicorn), a hello-world Flask app on the
same gunicorn settings (the floor: what this stack can do at all, `hello_app.py`), and
`mlflow models serve` (uvicorn) on the same champion. It checks that ours and MLflow return
the same probabilities, then drives each with wrk (a C load generator that costs little CPU):
8 keep-alive connections by default, bodies rotating over real patients, servers interleaved
level by level. Reports throughput, p50/p99 latency, server CPU per request, ours as a share of
the floor and as a multiple of MLflow, and a cProfile of what is left of our request.

    .venv/bin/python benchmarks/serving.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/serving.py --quick    # smoke run (results in .work/)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

HOST = "127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
OURS, HELLO, MLFLOW = "clinrisk serve", "hello-world Flask (floor)", "mlflow models serve"
TARGET_P99_MS, TARGET_FLOOR_SHARE, TARGET_MLFLOW_RATIO, TARGET_CONCURRENCY = 10.0, 0.5, 30.0, 8
WRK_SCRIPT = common.BENCH_DIR / "wrk" / "post.lua"


@dataclass
class Server:
    """One server under test: how to reach it and how to phrase a request for it."""

    name: str
    port: int
    path: str
    ready_path: str
    wrap: object  # records -> the request payload this server expects
    authorization: str = ""  # the same header goes to every server; only ours checks it
    pgid: int = 0
    bodies_file: Path | None = None

    def body(self, records: list[dict]) -> bytes:
        return json.dumps(self.wrap(records)).encode()


@dataclass
class LoadResult:
    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float
    busiest_share: float  # the busiest server process's share of the server's CPU
    extra: dict = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else float("nan")


# --- load generator -----------------------------------------------------------------------


def wrk_command(server: Server, connections: int, seconds: float, threads: int) -> list[str]:
    return [
        shutil.which("wrk") or "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{HOST}:{server.port}{server.path}",
    ]


def parse_wrk(output: str) -> dict:
    """The totals line post.lua prints (`WRK_JSON {...}`)."""
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON ") :])
    raise RuntimeError(f"wrk printed no totals:\n{output[-2000:]}")


def drive(server: Server, connections: int, seconds: float, threads: int = 2) -> LoadResult:
    """Run wrk against one server for `seconds` with `connections` keep-alive connections."""
    env = {**os.environ, "WRK_BODIES": str(server.bodies_file), "WRK_AUTHORIZATION": server.authorization}
    before = group_cpu_seconds(server.pgid)
    done = subprocess.run(
        wrk_command(server, connections, seconds, threads), env=env, capture_output=True, text=True,
        timeout=seconds + 60, check=False,
    )  # fmt: skip
    after = group_cpu_seconds(server.pgid)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    totals = parse_wrk(done.stdout)
    per_process = [after[pid] - before.get(pid, 0.0) for pid in after]
    server_cpu = sum(per_process)
    requests = max(totals["requests"], 1)
    return LoadResult(
        server=server.name,
        concurrency=connections,
        requests=totals["requests"],
        errors=totals["socket_errors"] + totals["status_errors"],
        seconds=totals["duration_us"] / 1e6,
        p50_ms=totals["p50_us"] / 1000,
        p99_ms=totals["p99_us"] / 1000,
        server_cpu_ms=server_cpu * 1000 / requests,
        busiest_share=max(per_process, default=0.0) / server_cpu if server_cpu > 0 else float("nan"),
        extra=totals,
    )


def group_cpu_seconds(pgid: int) -> dict[int, float]:
    """User + system CPU seconds of each live process in a process group, by pid (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


# --- servers ------------------------------------------------------------------------------


def ours(port: int) -> Server:
    return Server(
        OURS, port, "/predict", "/ready", wrap=lambda records: records[0] if len(records) == 1 else records
    )


def hello(port: int) -> Server:
    return Server(HELLO, port, "/predict", "/ready", wrap=lambda records: records[0])


def mlflow(port: int) -> Server:
    return Server(MLFLOW, port, "/invocations", "/ping", wrap=lambda records: {"dataframe_records": records})


def ours_command(port: int, workers: int) -> list[str]:
    return [
        str(common.VENV_BIN / "clinrisk"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def hello_command(port: int, workers: int) -> list[str]:
    """The floor, run by the very gunicorn configuration of `clinrisk serve` (worker class, keep-alive)."""
    from clinrisk.web.commands import gunicorn_command

    command = gunicorn_command(HOST, port, workers)
    return [*command[:-1], "--chdir", str(common.BENCH_DIR), "hello_app:create_app()"]


def mlflow_command(port: int, workers: int) -> list[str]:
    return [
        str(common.VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/stroke@champion",
        "--env-manager", "local", "-w", str(workers), "-h", HOST, "-p", str(port),
    ]  # fmt: skip


SERVERS = {"ours": (ours, ours_command), "hello": (hello, hello_command), "mlflow": (mlflow, mlflow_command)}


def probabilities(payload) -> list[float]:
    """The probabilities in an answer, whatever its shape: object, list, or {"predictions": [...]}."""
    if isinstance(payload, dict):
        if "probability" in payload:
            return [float(payload["probability"])]
        for key in ("predictions", "results", "data"):
            if key in payload:
                return probabilities(payload[key])
        raise ValueError(f"no probabilities in {str(payload)[:200]}")
    if isinstance(payload, list):
        return [p for item in payload for p in probabilities(item)]
    raise ValueError(f"no probabilities in {str(payload)[:200]}")


def ask(server: Server, records: list[dict]) -> list[float]:
    """POST records in one request and return the probabilities answered."""
    import requests

    response = requests.post(
        f"http://{HOST}:{server.port}{server.path}",
        data=server.body(records),
        headers={**JSON_HEADERS, "Authorization": server.authorization},
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} answered {response.status_code}: {response.text[:500]}")
    return probabilities(response.json())


def require_authentication(servers: list[Server], record: dict) -> None:
    """Prove that ours checks the key: the same request without it must be a 401."""
    import requests

    for server in servers:
        if server.name != OURS:
            continue
        url = f"http://{HOST}:{server.port}{server.path}"
        answer = requests.post(url, data=server.body([record]), headers=JSON_HEADERS, timeout=60)
        if answer.status_code != 401:
            raise RuntimeError(f"{OURS} answered {answer.status_code} without an API key: auth is not on")


def agreement(servers: list[Server], records: list[dict], singles: int) -> dict:
    """Ours and MLflow's probabilities for the same rows, as one batch and as single requests."""
    checked = {"rows": len(records), "singles": singles, "max_abs_diff": None}
    servers = [s for s in servers if s.name in (OURS, MLFLOW)]
    if len(servers) < 2:
        return {**checked, "not_measured": "ours and MLflow were not both in --servers"}
    try:
        batch = {s.name: ask(s, records) for s in servers}
        single = {s.name: [ask(s, [r])[0] for r in records[:singles]] for s in servers}
    except (RuntimeError, ValueError, OSError) as exc:  # requests' errors are OSErrors
        return {**checked, "not_measured": f"a server failed: {str(exc)[:200]}"}
    a, b = OURS, MLFLOW
    diffs = [np.abs(np.subtract(batch[a], batch[b])).max(), np.abs(np.subtract(single[a], single[b])).max()]
    diffs.append(np.abs(np.subtract(single[a], batch[a][:singles])).max())
    return {**checked, "max_abs_diff": float(max(diffs))}


# --- the benchmark ------------------------------------------------------------------------


def sample_records(spec, rows: int, seed: int) -> list[dict]:
    """Rows drawn from the real data, as JSON-ready records of the spec's features (NaN -> null)."""
    frame = common.real_data(spec)[spec.feature_names]
    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=seed)
    return json.loads(sample.to_json(orient="records"))


def run_levels(
    servers: list[Server], seconds: dict[str, float], levels: list[int], warmup: float, threads: int
) -> list[LoadResult]:
    """Warm each server up, then measure each level, interleaving servers so noise hits all."""
    for server in servers:
        drive(server, max(levels), warmup, threads)
    results = []
    for level in levels:
        for server in servers:
            result = drive(server, level, seconds[server.name], threads)
            print(
                f"  {server.name:<26} c={level:<3} "
                f"{common.figure(result.throughput, '8.1f', 'wrk reported no duration')} req/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                flush=True,
            )
            results.append(result)
    return results


def render(results: list[LoadResult], agree: dict, args, workers: int, startup: dict[str, float]) -> str:
    """The markdown section: per-server table, ours against the floor and MLflow, the verdict."""
    headers = ["server", "connections", "requests", "errors", "throughput (req/s)", "p50 (ms)", "p99 (ms)",
               "server CPU / req (ms)", "busiest worker's share of server CPU"]  # fmt: skip
    rows = [
        [r.server, r.concurrency, r.requests, r.errors,
         common.figure(r.throughput, ".0f", "wrk reported no duration"), f"{r.p50_ms:.2f}",
         f"{r.p99_ms:.2f}", f"{r.server_cpu_ms:.2f}",
         common.figure(r.busiest_share, ".0%", "no server CPU seen")]
        for r in results
    ]  # fmt: skip
    by = {(r.server, r.concurrency): r for r in results}
    side = []
    for level in args.concurrency:
        mine, floor, theirs = by.get((OURS, level)), by.get((HELLO, level)), by.get((MLFLOW, level))
        if mine:
            side.append([
                level, f"{mine.p99_ms:.2f}", f"{mine.throughput:.0f}",
                f"{mine.throughput / floor.throughput:.0%}" if floor else absent("the floor"),
                common.ratio(mine.throughput, theirs.throughput) if theirs else absent("MLflow"),
                common.ratio(theirs.server_cpu_ms, mine.server_cpu_ms) if theirs else absent("MLflow"),
            ])  # fmt: skip
    lines = [
        "## Serving: `clinrisk serve` against its floor and `mlflow models serve` (wrk)",
        "",
        common.run_stamp(),
        "",
        f"Same champion (trained by `clinrisk train` on the real data), {workers} workers each (gunicorn "
        "for ours and the hello-world floor, same sync worker class, which closes each connection after "
        "its answer; uvicorn for MLflow), all up at once on 127.0.0.1. "
        f"wrk ({args.wrk_threads} threads, reconnecting as the servers close) POSTs one "
        "patient per request with an API key (ours checks it: authentication is on, as by default, and "
        "the same request without the key was checked to be a 401; the "
        f"others ignore the header), rotating over {args.rows} real rows, for {args.seconds:g} s per server "
        f"and level ({args.mlflow_seconds:g} s for MLflow) after {args.warmup:g} s of warm-up, servers "
        "interleaved. wrk and the servers share the same cores, and other engineers' jobs share them too: "
        "see the load average above. Seconds from launch to ready (launched together): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in startup.items())
        + ".",
        "",
        common.markdown_table(headers, rows),
        "",
        "Side by side (ours; the floor and MLflow measured in the same run):",
        "",
        common.markdown_table(
            [
                "connections",
                "p99 (ms)",
                "throughput (req/s)",
                "% of floor",
                "x MLflow throughput",
                "MLflow's server CPU / ours, per request",
            ],
            side,
        ),
        "",
        agreement_line(agree, args.tolerance),
        "",
        verdict(by),
        "",
        overhead_note(by),
    ]
    return "\n".join(lines)


def absent(server: str) -> str:
    return common.not_measured(f"{server} not in --servers")


def overhead_note(by: dict) -> str:
    """What ours costs above the floor per request, in server CPU (the figure least moved by load)."""
    mine, floor = by.get((OURS, TARGET_CONCURRENCY)), by.get((HELLO, TARGET_CONCURRENCY))
    if not (mine and floor):
        return ""
    extra = mine.server_cpu_ms - floor.server_cpu_ms
    return (
        f"Where the rest goes: ours costs {mine.server_cpu_ms:.2f} ms of server CPU per request, the floor "
        f"{floor.server_cpu_ms:.2f} ms; the {extra:.2f} ms above the floor are the app's own work (request "
        "validation, scoring, the prediction journal and log queue, metrics) plus the log writer thread's "
        "inserts, which the in-process profile below does not see. With 8 connections on 2 shared cores, "
        "latency is queueing: p99 follows throughput and the machine's other load."
    )


def agreement_line(agree: dict, tolerance: float) -> str:
    """Say whether ours and MLflow gave the same probabilities for the same rows."""
    if agree["max_abs_diff"] is None:
        return f"Same probabilities: {common.not_measured(agree['not_measured'])}."
    same = "agree" if agree["max_abs_diff"] <= tolerance else "DISAGREE"
    return (
        f"Same probabilities: {agree['rows']} rows as one batch and {agree['singles']} as single requests "
        f"to each server; largest absolute difference {agree['max_abs_diff']:.2e} "
        f"({same} within {tolerance:g})."
    )


def _target(name: str, got: float, ok: bool, wanted: str, shortfall: str) -> str:
    return f"{name} {wanted}: " + ("met" if ok else f"missed by {shortfall}")


def verdict(by: dict) -> str:
    """Targets at 8 connections: p99 ≤ 10 ms, ≥ 50 % of the floor's throughput, ≥ 30x MLflow's."""
    mine = by.get((OURS, TARGET_CONCURRENCY))
    if mine is None:
        return f"Targets (c={TARGET_CONCURRENCY}): not measured in this run."
    parts = [
        f"p99 {mine.p99_ms:.1f} ms (target ≤ {TARGET_P99_MS:g} ms: "
        + ("met)" if mine.p99_ms <= TARGET_P99_MS else f"missed by {mine.p99_ms - TARGET_P99_MS:.1f} ms)")
    ]
    floor, theirs = by.get((HELLO, TARGET_CONCURRENCY)), by.get((MLFLOW, TARGET_CONCURRENCY))
    if floor:
        share = mine.throughput / floor.throughput
        parts.append(
            f"{share:.0%} of the floor's throughput (target ≥ {TARGET_FLOOR_SHARE:.0%}: "
            + (
                "met)"
                if share >= TARGET_FLOOR_SHARE
                else f"missed by {TARGET_FLOOR_SHARE - share:.0%} points)"
            )
        )
    if theirs:
        got = mine.throughput / theirs.throughput
        parts.append(
            f"{got:.1f}x MLflow's throughput (target ≥ {TARGET_MLFLOW_RATIO:g}x: "
            + ("met)" if got >= TARGET_MLFLOW_RATIO else f"missed by {TARGET_MLFLOW_RATIO / got:.2f}x)")
        )
    return f"**Targets at {TARGET_CONCURRENCY} connections:** " + "; ".join(parts) + "."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[TARGET_CONCURRENCY], help="wrk connections per level."
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="wrk duration per level for ours and the floor."
    )
    parser.add_argument(
        "--mlflow-seconds", type=float, default=20.0, help="wrk duration per level for MLflow."
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of warm-up load per server.")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--rows", type=int, default=1000, help="Distinct real rows the requests cycle through."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="Workers per server (default: cores).",
    )
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--tolerance", type=float, default=1e-5, help="Allowed probability difference.")
    parser.add_argument(
        "--profile-requests", type=int, default=2000, help="In-process profile of our app (0: off)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Smoke run: short levels, written under .work/.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    common.add_home_argument(parser)
    parser.add_argument("--profile-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--records-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # shorter runs, except where a value was given on the command line
        quick = {"seconds": 5.0, "mlflow_seconds": 5.0, "warmup": 1.0, "profile_requests": 300}
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


# --- profile ------------------------------------------------------------------------------


def profile_app(requests: int, records_file: Path) -> str:
    """cProfile our Flask app in-process (test client, no network) over single-patient POSTs."""
    import cProfile
    import io
    import pstats

    from clinrisk.settings import load_settings
    from clinrisk.web import create_app
    from clinrisk.web.runtime import WORKER_SWITCH_INTERVAL

    records = json.loads(records_file.read_text())
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)  # as gunicorn_conf sets it in each worker
    app = create_app(load_settings(auth_enabled=True), watch=False)  # no registry poll mid-profile
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = os.environ["BENCH_AUTHORIZATION"]
    for record in records[:20]:
        client.post("/predict", json=record)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for i in range(requests):
        response = client.post("/predict", json=records[i % len(records)])
        if response.status_code != 200:
            raise RuntimeError(
                f"/predict answered {response.status_code}: {response.get_data(as_text=True)[:300]}"
            )
    profiler.disable()
    per_request = (time.perf_counter() - started) * 1000 / requests
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    return (
        f"{requests} requests through the Flask test client, {per_request:.2f} ms each under cProfile.\n"
        + out.getvalue()
    )


def app_profile(home: Path, records: list[dict], requests: int, workdir: Path, authorization: str) -> str:
    """Run `profile_app` in a fresh process on the benchmark's state directory."""
    records_file = workdir / "records.json"
    records_file.write_text(json.dumps(records))
    command = [sys.executable, __file__, "--profile-only", str(requests), "--records-file", str(records_file)]
    result = common.measure(command, common.bench_env(home, BENCH_AUTHORIZATION=authorization), timeout=600)
    if result.returncode != 0:
        return f"profile failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
    return result.stdout


# --- main ---------------------------------------------------------------------------------


def start_servers(names: list[str], home: Path, workers: int, stack) -> tuple[list[Server], dict[str, float]]:
    """Start the chosen servers at once and wait for all; each stops when `stack` closes.

    Returns the servers and each one's seconds from launch to ready, waited for side by side.
    """
    from concurrent.futures import ThreadPoolExecutor

    # Authentication on, as `clinrisk serve` runs by default: every request carries an API key.
    metrics_dir = str(home / "prometheus")
    env = common.bench_env(home, PROMETHEUS_MULTIPROC_DIR=metrics_dir, CLINRISK_AUTH_ENABLED="true")
    authorization = f"Bearer {common.api_key(home)}"
    started = []
    for name in names:
        port = common.free_port()
        make, command = SERVERS[name]
        server = make(port)
        server.authorization = authorization
        log = home / f"{name}.log"
        launched = time.monotonic()
        process = stack.enter_context(common.running(command(port, workers), env, log))
        server.pgid = process.pid
        started.append((server, process, log, launched))

    def ready(server: Server, process, log: Path, launched: float) -> float:
        common.wait_for_http(f"http://{HOST}:{server.port}{server.ready_path}", process, log, timeout=180)
        return time.monotonic() - launched

    with ThreadPoolExecutor(len(started)) as pool:
        waits = [pool.submit(ready, *entry) for entry in started]
        startup = {entry[0].name: wait.result() for entry, wait in zip(started, waits, strict=True)}
    return [entry[0] for entry in started], startup


def write_bodies(servers: list[Server], records: list[dict], workdir: Path) -> None:
    """One file per server with one request body per line, for wrk's post.lua."""
    for server in servers:
        server.bodies_file = workdir / f"bodies-{server.port}.jsonl"
        server.bodies_file.write_bytes(b"\n".join(server.body([r]) for r in records) + b"\n")


def run(args: argparse.Namespace) -> str:
    """Train a champion, start the servers, check agreement, measure, profile; return the section."""
    import contextlib

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (tools/system-packages.sh does it)")
    spec = common.load_spec()
    records = sample_records(spec, args.rows, args.seed)
    with common.work_dir("serving") as tmp, contextlib.ExitStack() as stack:
        home = common.champion_home(args.home, Path(tmp))
        print("starting servers ...", flush=True)
        servers, startup = start_servers(args.servers, home, args.workers, stack)
        require_authentication(servers, records[0])
        agree = agreement(servers, records[:200], singles=20)
        print(agreement_line(agree, args.tolerance), flush=True)
        write_bodies(servers, records, home)
        seconds = {s.name: args.mlflow_seconds if s.name == MLFLOW else args.seconds for s in servers}
        results = run_levels(servers, seconds, args.concurrency, args.warmup, args.wrk_threads)
        stack.close()
        common.save_raw("serving", {"agreement": agree, "startup": startup, "results": results})
        body = render(results, agree, args, args.workers, startup)
        if args.profile_requests and "ours" in args.servers:
            profile = app_profile(home, records, args.profile_requests, home, servers[0].authorization)
            body += (
                "\n\n<details><summary>What is left of our request: cProfile of the app in-process (Flask "
                "test client, no network; by cumulative then own time)</summary>\n\n```text\n"
                + profile.strip()
                + "\n```\n\n</details>"
            )
    if agree["max_abs_diff"] is not None and agree["max_abs_diff"] > args.tolerance:
        print(f"WARNING: the servers disagree by {agree['max_abs_diff']:.2e}", file=sys.stderr)
    return body


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    if args.profile_only:
        print(profile_app(args.profile_only, args.records_file))
        return 0
    body = run(args)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "serving", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
