"""Serving: our service against `mlflow models serve`, same champion, same load, same machine.

Trains a champion into a fresh state directory, starts `clinrisk serve` (gunicorn, one worker
per core) and `mlflow models serve` (uvicorn, as many workers) on it, checks both return the
same probabilities for the same rows, then drives both with the same bounded keep-alive load
client on 127.0.0.1 at each concurrency level, interleaving the two servers level by level.
Reports throughput, p50/p99 latency, server and client CPU per request, and their ratios.

    .venv/bin/python benchmarks/serving.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/serving.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

HOST = "127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "Connection": "keep-alive"}
TARGET_RATIO, TARGET_P99_MS, TARGET_CONCURRENCY = 10.0, 10.0, 8
RETRYABLE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    http.client.CannotSendRequest,
)


@dataclass
class Server:
    """One server under test: how to reach it, how to phrase a request and read its answer."""

    name: str
    port: int
    path: str
    ready_path: str
    wrap: Callable[[list[dict]], object]  # records -> the request payload this server expects
    pgid: int = 0
    bodies: list[bytes] = field(default_factory=list)

    def body(self, records: list[dict]) -> bytes:
        return json.dumps(self.wrap(records)).encode()


@dataclass
class LoadResult:
    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    server_cpu_ms: float
    client_cpu_ms: float
    busiest_share: float  # the busiest server process's share of the server's CPU

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


# --- load client ------------------------------------------------------------------------


def _send(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    """POST one body and read the whole answer; reconnect once if the server closed the socket."""
    try:
        return _post(conn, path, body)
    except RETRYABLE:
        conn.close()  # the next request opens a new connection
        return _post(conn, path, body)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    conn.request("POST", path, body=body, headers=JSON_HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def drive(server: Server, requests: int, concurrency: int, timeout: float = 30.0) -> LoadResult:
    """Send exactly `requests` POSTs with `concurrency` keep-alive connections; time each one."""
    latencies = np.zeros(requests)
    statuses = np.zeros(requests, dtype=int)
    barrier = threading.Barrier(concurrency + 1)

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
        barrier.wait()
        for i in range(offset, requests, concurrency):
            started = time.perf_counter()
            try:
                statuses[i] = _send(conn, server.path, server.bodies[i % len(server.bodies)])
            except (OSError, http.client.HTTPException):
                conn.close()
                statuses[i] = 0
            latencies[i] = time.perf_counter() - started
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    before, client_cpu = group_cpu_seconds(server.pgid), time.process_time()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    after = group_cpu_seconds(server.pgid)
    per_process = [after[pid] - before.get(pid, 0.0) for pid in after]
    server_cpu = sum(per_process)
    return LoadResult(
        server=server.name,
        concurrency=concurrency,
        requests=requests,
        errors=int((statuses != 200).sum()),
        seconds=seconds,
        latencies_ms=latencies * 1000,
        server_cpu_ms=server_cpu * 1000 / requests,
        client_cpu_ms=client_cpu * 1000 / requests,
        busiest_share=max(per_process, default=0.0) / server_cpu if server_cpu > 0 else float("nan"),
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
        "clinrisk serve",
        port,
        "/predict",
        "/ready",
        wrap=lambda records: records[0] if len(records) == 1 else records,
    )


def mlflow(port: int) -> Server:
    return Server(
        "mlflow models serve",
        port,
        "/invocations",
        "/ping",
        wrap=lambda records: {"dataframe_records": records},
    )


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


def mlflow_command(port: int, workers: int) -> list[str]:
    return [
        str(common.VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/stroke@champion",
        "--env-manager", "local", "-w", str(workers), "-h", HOST, "-p", str(port),
    ]  # fmt: skip


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
        headers=JSON_HEADERS,
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} answered {response.status_code}: {response.text[:500]}")
    return probabilities(response.json())


def agreement(servers: list[Server], records: list[dict], singles: int) -> dict:
    """Both servers' probabilities for the same rows, as one batch and as single requests."""
    batch = {s.name: ask(s, records) for s in servers}
    single = {s.name: [ask(s, [r])[0] for r in records[:singles]] for s in servers}
    names = [s.name for s in servers]
    if len(names) < 2:
        return {"rows": len(records), "singles": singles, "max_abs_diff": float("nan")}
    a, b = names
    diffs = [np.abs(np.subtract(batch[a], batch[b])).max(), np.abs(np.subtract(single[a], single[b])).max()]
    diffs.append(np.abs(np.subtract(single[a], batch[a][:singles])).max())
    return {"rows": len(records), "singles": singles, "max_abs_diff": float(max(diffs))}


# --- the benchmark ------------------------------------------------------------------------


def sample_records(spec, rows: int, seed: int) -> list[dict]:
    """Rows drawn from the real data, as JSON-ready records of the spec's features (NaN -> null)."""
    frame = common.real_data(spec)[spec.feature_names]
    sample = frame.sample(n=rows, replace=rows > len(frame), random_state=seed)
    return json.loads(sample.to_json(orient="records"))


def run_levels(
    servers: list[Server], counts: dict[str, int], levels: list[int], warmup: int
) -> list[LoadResult]:
    """Warm each server up, then measure each level, interleaving servers so noise hits both."""
    for server in servers:
        drive(server, warmup, max(levels))
    results = []
    for level in levels:
        for server in servers:
            result = drive(server, counts[server.name], level)
            print(
                f"  {server.name:<20} c={level:<3} {result.throughput:8.1f} req/s"
                f"  p50 {result.percentile(50):7.2f} ms  p99 {result.percentile(99):7.2f} ms"
                f"  errors {result.errors}",
                flush=True,
            )
            results.append(result)
    return results


def render(results: list[LoadResult], agree: dict, args, workers: int, startup: dict[str, float]) -> str:
    """The markdown section: per-server table, ratios per level and the target verdict."""
    headers = [
        "server",
        "concurrency",
        "requests",
        "errors",
        "throughput (req/s)",
        "p50 (ms)",
        "p99 (ms)",
        "server CPU / req (ms)",
        "client CPU / req (ms)",
        "busiest process's share of server CPU",
    ]
    rows = [
        [
            r.server,
            r.concurrency,
            r.requests,
            r.errors,
            f"{r.throughput:.0f}",
            f"{r.percentile(50):.2f}",
            f"{r.percentile(99):.2f}",
            f"{r.server_cpu_ms:.2f}",
            f"{r.client_cpu_ms:.2f}",
            f"{r.busiest_share:.0%}",
        ]
        for r in results
    ]
    by = {(r.server, r.concurrency): r for r in results}
    ratio_rows = []
    for level in args.concurrency:
        mine, theirs = by.get(("clinrisk serve", level)), by.get(("mlflow models serve", level))
        if mine and theirs:
            ratio_rows.append(
                [
                    level,
                    common.ratio(mine.throughput, theirs.throughput),
                    common.ratio(theirs.percentile(50), mine.percentile(50)),
                    common.ratio(theirs.percentile(99), mine.percentile(99)),
                    common.ratio(theirs.server_cpu_ms, mine.server_cpu_ms),
                ]
            )
    lines = [
        "## Serving: `clinrisk serve` vs `mlflow models serve`",
        "",
        common.run_stamp(),
        "",
        f"Same champion (trained by `clinrisk train` on the real data), {workers} workers each "
        f"(gunicorn for ours, uvicorn for MLflow), both up at once on 127.0.0.1. One patient per request, "
        f"rows sampled from the real data; the load client ({args.rows} distinct rows, keep-alive "
        "`http.client` connections, reopened whenever a server closes them, one thread per connection) "
        "sends a fixed number of requests per level and runs on the same cores as the servers. Levels "
        f"are interleaved (ours, MLflow, next level) after {args.warmup} warm-up requests each. Seconds "
        "from launch to ready (both "
        "launched together): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in startup.items())
        + ".",
        "",
        common.markdown_table(headers, rows),
        "",
    ]
    if ratio_rows:
        lines += [
            "Ours relative to MLflow (higher is better for ours). The last column, MLflow's server CPU per "
            "request over ours, depends least on other load on the machine:",
            "",
            common.markdown_table(
                ["concurrency", "throughput ratio", "p50 speed-up", "p99 speed-up", "server CPU per request"],
                ratio_rows,
            ),
            "",
        ]
    lines += [agreement_line(agree, args.tolerance), "", verdict(by), "", balance_note(results, workers)]
    return "\n".join(lines)


def balance_note(results: list[LoadResult], workers: int) -> str:
    """Say whether the workers shared the load, from each level's busiest-process share of server CPU."""
    even = 1 / workers
    shares = ", ".join(f"{r.server} c={r.concurrency}: {r.busiest_share:.0%}" for r in results)
    return (
        f"Load balance across workers (busiest process's share of server CPU; {even:.0%} is an even split "
        f"over {workers} workers, near 100% means one worker served nearly every connection, which caps "
        f"a server at about one core): {shares}. Keep-alive connections stay with the worker that "
        "accepted them, so an uneven split persists for the whole level."
    )


def agreement_line(agree: dict, tolerance: float) -> str:
    """Say whether both servers gave the same probabilities for the same rows."""
    if not np.isfinite(agree["max_abs_diff"]):
        return "Same probabilities: not checked (only one server ran)."
    same = "agree" if agree["max_abs_diff"] <= tolerance else "DISAGREE"
    return (
        f"Same probabilities: {agree['rows']} rows as one batch and {agree['singles']} as single requests "
        f"to each server; largest absolute difference {agree['max_abs_diff']:.2e} "
        f"({same} within {tolerance:g})."
    )


def verdict(by: dict) -> str:
    """Target: at concurrency 8, ≥ 10x MLflow's throughput with p99 ≤ 10 ms."""
    mine, theirs = (
        by.get(("clinrisk serve", TARGET_CONCURRENCY)),
        by.get(("mlflow models serve", TARGET_CONCURRENCY)),
    )
    if not (mine and theirs):
        return f"Target (c={TARGET_CONCURRENCY}): not measured in this run."
    got = mine.throughput / theirs.throughput
    p99 = mine.percentile(99)
    parts = [
        f"throughput {got:.1f}x MLflow (target ≥ {TARGET_RATIO:g}x: "
        + ("met" if got >= TARGET_RATIO else f"missed by {TARGET_RATIO / got:.2f}x")
        + ")",
        f"p99 {p99:.1f} ms (target ≤ {TARGET_P99_MS:g} ms: "
        + ("met" if p99 <= TARGET_P99_MS else f"missed by {p99 - TARGET_P99_MS:.1f} ms")
        + ")",
    ]
    text = f"**Target at concurrency {TARGET_CONCURRENCY}:** " + "; ".join(parts) + "."
    if got < TARGET_RATIO or p99 > TARGET_P99_MS:
        text += "\n\n" + cpu_budget(mine)
    return text


def cpu_budget(result: LoadResult) -> str:
    """Why latency is what it is: Little's law and the CPU each request costs on these cores."""
    cores = len(os.sched_getaffinity(0))
    in_flight = result.concurrency
    mean_ms = 1000 * in_flight / result.throughput
    needed = 1000 * in_flight / TARGET_P99_MS
    server, client = result.server_cpu_ms, result.client_cpu_ms
    ceiling = cores * 1000 / (server + client) if server + client else float("nan")
    return (
        f"Where the time goes: with {in_flight} requests always in flight, mean latency is {in_flight} / "
        f"throughput = {mean_ms:.1f} ms (Little's law), so a p99 ≤ {TARGET_P99_MS:g} ms needs well over "
        f"{needed:.0f} req/s. Each request costs {server:.2f} ms of server CPU plus {client:.2f} ms of "
        f"load-client CPU on the same {cores} cores: a ceiling of about {ceiling:.0f} req/s before any other "
        "load on the machine. The profile below splits the server's share."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=3000, help="Requests per level to our service.")
    parser.add_argument("--mlflow-requests", type=int, default=600, help="Requests per level to MLflow.")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--rows", type=int, default=1000, help="Distinct real rows the requests cycle through."
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="Workers per server (default: cores)."
    )
    parser.add_argument("--servers", nargs="+", choices=["ours", "mlflow"], default=["ours", "mlflow"])
    parser.add_argument("--tolerance", type=float, default=1e-5, help="Allowed probability difference.")
    parser.add_argument(
        "--profile-requests", type=int, default=500, help="In-process profile of our app (0: off)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Smoke run: few requests, written under .work/.")
    parser.add_argument("--results", type=Path, default=None, help="Results file to update.")
    parser.add_argument("--profile-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--records-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.mlflow_requests, args.warmup, args.profile_requests = 200, 60, 20, 100
    return args


# --- profile ------------------------------------------------------------------------------


def profile_app(requests: int, records_file: Path) -> str:
    """cProfile our Flask app in-process (test client, no network) over single-patient POSTs."""
    import cProfile
    import io
    import pstats

    from clinrisk.settings import load_settings
    from clinrisk.web import create_app

    records = json.loads(records_file.read_text())
    app = create_app(load_settings(auth_enabled=False))
    client = app.test_client()
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
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(25)
    return (
        f"{requests} requests through the Flask test client, {per_request:.2f} ms each under cProfile.\n"
        + out.getvalue()
    )


def app_profile(home: Path, records: list[dict], requests: int, workdir: Path) -> str:
    """Run `profile_app` in a fresh process on the benchmark's state directory."""
    records_file = workdir / "records.json"
    records_file.write_text(json.dumps(records))
    command = [sys.executable, __file__, "--profile-only", str(requests), "--records-file", str(records_file)]
    result = common.measure(command, common.bench_env(home), timeout=600)
    if result.returncode != 0:
        return f"profile failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
    return result.stdout


# --- main ---------------------------------------------------------------------------------


def start_servers(names: list[str], home: Path, workers: int, stack) -> tuple[list[Server], dict[str, float]]:
    """Start the chosen servers at once and wait for all; each stops when `stack` closes.

    Returns the servers and each one's seconds from launch to ready, waited for side by side.
    """
    from concurrent.futures import ThreadPoolExecutor

    env = common.bench_env(home)
    started = []
    for name in names:
        port = common.free_port()
        server, command = (
            (ours(port), ours_command(port, workers))
            if name == "ours"
            else (mlflow(port), mlflow_command(port, workers))
        )
        log = home / f"{name}.log"
        launched = time.monotonic()
        process = stack.enter_context(common.running(command, env, log))
        server.pgid = process.pid
        started.append((server, process, log, launched))

    def ready(server: Server, process, log: Path, launched: float) -> float:
        common.wait_for_http(f"http://{HOST}:{server.port}{server.ready_path}", process, log, timeout=180)
        return time.monotonic() - launched

    with ThreadPoolExecutor(len(started)) as pool:
        waits = [pool.submit(ready, *entry) for entry in started]
        startup = {entry[0].name: wait.result() for entry, wait in zip(started, waits, strict=True)}
    return [entry[0] for entry in started], startup


def run(args: argparse.Namespace) -> str:
    """Train a champion, start both servers, check agreement, measure, profile; return the section."""
    import contextlib

    spec = common.load_spec()
    records = sample_records(spec, args.rows, args.seed)
    with common.work_dir("serving") as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        print("training the champion ...", flush=True)
        common.train_champion(home)
        print("starting servers ...", flush=True)
        servers, startup = start_servers(args.servers, home, args.workers, stack)
        agree = agreement(servers, records[:200], singles=20)
        print(f"agreement: {agree}", flush=True)
        counts = {}
        for server in servers:
            server.bodies = [server.body([r]) for r in records]
            counts[server.name] = args.requests if server.name == "clinrisk serve" else args.mlflow_requests
        results = run_levels(servers, counts, args.concurrency, args.warmup)
        stack.close()
        common.save_raw("serving", {"agreement": agree, "startup": startup, "results": results})
        body = render(results, agree, args, args.workers, startup)
        if args.profile_requests and "ours" in args.servers:
            profile = app_profile(home, records, args.profile_requests, home)
            body += (
                "\n\n<details><summary>Where our time goes: cProfile of the app in-process (top 25 by "
                "cumulative time)</summary>\n\n```text\n" + profile.strip() + "\n```\n\n</details>"
            )
    if agree["max_abs_diff"] > args.tolerance:
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
