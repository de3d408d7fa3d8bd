"""A real user's latency while clients flood the service with wrong passwords.

    .venv/bin/python benchmarks/login_flood.py            # ~3 min on 2 cores (training included)
    .venv/bin/python benchmarks/login_flood.py --quick

Trains a champion, starts `clinrisk serve` (gunicorn, 2 workers, auth on) twice: once with the
failed-login limit effectively off (the behaviour before it existed) and once with the default
limit. In each, `--flooders` threads post wrong passwords without pause while one real user
(HTTP Basic, a verified password) sends `--requests` predictions one after another. Reports
the real user's median and p99 latency, the flood's status codes and its request rate.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

HOST = "127.0.0.1"
PASSWORD = "a real user's long password"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def post(conn: http.client.HTTPConnection, body: bytes, auth: str) -> int:
    conn.request("POST", "/predict", body, {"Content-Type": "application/json", "Authorization": auth})
    response = conn.getresponse()
    response.read()
    return response.status


def flood(port: int, body: bytes, stop: threading.Event, codes: Counter, index: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            codes[post(conn, body, basic("alice", f"guess {index}-{attempt}"))] += 1
        except (OSError, http.client.HTTPException):
            codes["error"] += 1
            conn = http.client.HTTPConnection(HOST, port, timeout=60)


def real_user(port: int, body: bytes, requests: int) -> tuple[np.ndarray, Counter]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    auth, latencies, codes = basic("alice", PASSWORD), [], Counter()
    post(conn, body, auth)  # the first request verifies the password once (scrypt)
    for _ in range(requests):
        started = time.perf_counter()
        codes[post(conn, body, auth)] += 1
        latencies.append((time.perf_counter() - started) * 1000)
    return np.asarray(latencies), codes


def scenario(home: Path, label: str, limit: int, args, body: bytes) -> dict:
    """One server start: the real user alone, then under the flood."""
    port = common.free_port()
    env = common.bench_env(home, CLINRISK_AUTH_ENABLED="true", CLINRISK_AUTH_FAILURE_LIMIT=str(limit))
    command = [
        str(common.VENV_BIN / "clinrisk"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    log = home / f"serve-{limit}.log"
    with common.running(command, env, log) as process:
        common.wait_for_http(f"http://{HOST}:{port}/ready", process, log, timeout=180)
        quiet, _ = real_user(port, body, args.requests)
        stop, flood_codes = threading.Event(), Counter()
        threads = [
            threading.Thread(target=flood, args=(port, body, stop, flood_codes, i), daemon=True)
            for i in range(args.flooders)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # let the flood reach its steady state
        loaded, user_codes = real_user(port, body, args.requests)
        stop.set()
        for thread in threads:
            thread.join(30)
        seconds = time.monotonic() - started
    return {
        "label": label,
        "limit": limit,
        "quiet_p50": float(np.percentile(quiet, 50)),
        "quiet_p99": float(np.percentile(quiet, 99)),
        "flood_p50": float(np.percentile(loaded, 50)),
        "flood_p99": float(np.percentile(loaded, 99)),
        "user_codes": dict(user_codes),
        "flood_codes": {str(k): v for k, v in flood_codes.items()},
        "flood_rate": sum(flood_codes.values()) / seconds,
    }


def render(results: list[dict], args) -> str:
    rows = [
        [
            r["label"],
            f"{r['quiet_p50']:.1f} / {r['quiet_p99']:.1f}",
            f"{r['flood_p50']:.1f} / {r['flood_p99']:.1f}",
            ", ".join(f"{k}: {v}" for k, v in sorted(r["user_codes"].items())),
            ", ".join(f"{k}: {v}" for k, v in sorted(r["flood_codes"].items())),
            f"{r['flood_rate']:.0f}",
        ]
        for r in results
    ]
    table = common.markdown_table(
        [
            "failed-login limit",
            "real user alone, p50 / p99 ms",
            "real user under the flood, p50 / p99 ms",
            "real user's answers",
            "flood's answers",
            "flood req/s",
        ],
        rows,
    )
    return (
        "## Login flood: a real user's latency while others flood wrong passwords\n\n"
        f"{common.run_stamp()}\n\n`clinrisk serve`, 2 gunicorn workers, auth on; {args.flooders} threads "
        f"post wrong passwords for `alice` without pause while `alice` (a verified password) sends "
        f"{args.requests} predictions one after another.\n\n{table}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="The real user's requests per phase.")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="Smoke run: few requests, written under .work/.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = min(args.requests, 60)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    spec = common.load_spec()
    record = common.real_data(spec)[spec.feature_names].dropna().iloc[0].to_dict()
    body = json.dumps(record, default=float).encode()
    with common.work_dir("login-flood") as tmp:
        home = Path(tmp)
        print("training the champion ...", flush=True)
        common.train_champion(home)
        from clinrisk.web.users import add_user

        add_user(home / "users.json", "alice", PASSWORD)
        results = [
            scenario(home, "off (1,000,000)", 1_000_000, args, body),
            scenario(home, "on (default: 10 a minute)", 10, args, body),
        ]
    common.save_raw("login_flood", results)
    text = render(results, args)
    print(text)
    common.write_results(common.results_path(args.results, args.quick), "login-flood", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
