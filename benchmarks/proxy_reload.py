"""The scaled stack's proxy under reloads and a killed replica: failed POSTs, client keep-alive on and off.

    .venv/bin/python benchmarks/proxy_reload.py              # ~1 min; needs a Docker engine
    .venv/bin/python benchmarks/proxy_reload.py --quick

The proxy (dockerized_service_definitions/proxy) reloads nginx whenever the set of web replicas
changes. A reload closes the old nginx workers' idle client connections, so a client that sends
its next request on a kept-alive connection at that moment gets a reset. This measures how
often that happens: the proxy image in front of two stand-in replicas (a minimal Python HTTP
server, so that nginx and not the service is measured) on a private Docker network, `--threads`
clients posting back to back on kept-alive connections, while (1) `--reloads` reloads run 0.25
s apart, and (2) one replica is killed (SIGKILL) and started again three times. Each scenario
runs with nginx.conf as shipped (`keepalive_timeout 0`: one request per client connection) and
with nginx's default client keep-alive (75 s). Image: clinrisk-proxy:$CLINRISK_IMAGE_TAG (built
if missing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

PROXY_DIR = common.REPO / "dockerized_service_definitions" / "proxy"
STAND_IN = """
import http.server, socketserver
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(("0.0.0.0", 8000), Handler).serve_forever()
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reloads", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="10 reloads")
    parser.add_argument("--results", type=common.results_file, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.reloads = 10
    return args


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


class Trial:
    """A private network with two stand-in replicas (alias `web`) and the proxy in front."""

    def __init__(self, image: str, config: Path, work: Path):
        self.name = f"bench-proxy-{os.getpid()}"
        self.image, self.config, self.work = image, config, work
        self.port = common.free_port()

    def __enter__(self) -> Trial:
        docker("network", "create", self.name)
        for replica in (1, 2):
            self.start_replica(replica)
        docker(
            "run", "-d", "--name", f"{self.name}-proxy", "--network", self.name,
            "-p", f"127.0.0.1:{self.port}:8000", "-v", f"{self.config}:/etc/nginx/nginx.conf:ro", self.image,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.post(f"{self.url}/predict", json={}, timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the proxy did not answer:\n{docker('logs', f'{self.name}-proxy', check=False)}")

    def __exit__(self, *exc) -> None:
        names = [f"{self.name}-proxy", f"{self.name}-web1", f"{self.name}-web2"]
        docker("rm", "-f", *names, check=False)
        docker("network", "rm", self.name, check=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_replica(self, replica: int) -> None:
        docker(
            "run", "-d", "--rm", "--name", f"{self.name}-web{replica}", "--network", self.name,
            "--network-alias", "web", "-v", f"{self.work}:/stand-in:ro",
            "python:3.11-slim", "python", "/stand-in/server.py",
        )  # fmt: skip

    def reload(self) -> None:
        docker("exec", f"{self.name}-proxy", "nginx", "-s", "reload", check=False)

    def kill_and_restart(self) -> None:
        docker("kill", f"{self.name}-web1", check=False)
        time.sleep(3)
        self.start_replica(1)
        time.sleep(3)


def under_load(url: str, threads: int, disturb: Callable[[], None]) -> Counter:
    """Outcomes of back-to-back POSTs on kept-alive connections while `disturb` runs."""
    outcomes: Counter = Counter()
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    outcomes[session.post(f"{url}/predict", json={"a": 1}, timeout=10).status_code] += 1
                except requests.RequestException as exc:
                    outcomes[type(exc).__name__] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        disturb()
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    image = f"clinrisk-proxy:{os.environ.get('CLINRISK_IMAGE_TAG', 'latest')}"
    if not docker("images", "-q", image):
        docker("build", "-q", "-t", image, str(PROXY_DIR))
    shipped = (PROXY_DIR / "nginx.conf").read_text()
    assert "keepalive_timeout 0;" in shipped, "nginx.conf no longer turns client keep-alive off"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        work = Path(tmp)
        (work / "server.py").write_text(STAND_IN)
        configs = {
            "off (as shipped)": shipped,
            "on (nginx default, 75 s)": shipped.replace(
                "keepalive_timeout 0;", "# client keep-alive: default"
            ),
        }
        for label, text in configs.items():
            config = work / f"nginx-{len(rows)}.conf"
            config.write_text(text)
            with Trial(image, config, work) as trial:

                def reloads(trial=trial) -> None:
                    for _ in range(args.reloads):
                        time.sleep(0.25)
                        trial.reload()

                def kills(trial=trial) -> None:
                    for _ in range(3):
                        trial.kill_and_restart()

                for scenario, disturb in (
                    (f"{args.reloads} reloads", reloads),
                    ("3 kills of a replica", kills),
                ):
                    outcomes = under_load(trial.url, args.threads, disturb)
                    failed = sum(n for k, n in outcomes.items() if k != 200)
                    rows.append([label, scenario, sum(outcomes.values()), failed, dict(outcomes)])
                    print(rows[-1], flush=True)
    text = "\n\n".join(
        [
            "## Proxy: failed requests under reloads and a killed replica",
            common.run_stamp(argv if argv is not None else sys.argv),
            f"{args.threads} clients post back to back through the proxy image to two stand-in "
            "replicas (`benchmarks/proxy_reload.py`). A failure is any answer but 200, or a "
            "connection error.",
            common.markdown_table(
                ["client keep-alive", "disturbance", "requests", "failed", "outcomes"],
                rows,
            ),
        ]
    )
    print(text)
    common.write_results(common.results_path(args.results, args.quick), "proxy", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
