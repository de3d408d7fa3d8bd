"""Gunicorn configuration for `clinrisk serve` (or `gunicorn -c python:clinrisk.web.gunicorn_conf`).

Gunicorn executes this module in the master process before any worker starts, which is why
it reads the settings and prepares the environment at import: workers inherit it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from clinrisk.settings import load_settings

_settings = load_settings()

wsgi_app = "clinrisk.web:create_app()"
bind = ["127.0.0.1:8000"]
workers = _settings.workers
# Sync workers: one request at a time per process, which is what a CPU-bound ~1 ms request wants
# on one core per worker. Not gthread: in gunicorn 26.2 its SIGTERM handler can deadlock on the
# worker's callback queue, and a worker killed after graceful_timeout loses its log queue.
worker_class = "sync"
timeout = 60  # a worker silent this long is restarted; loading a champion takes a few seconds
graceful_timeout = 30  # time for requests in flight and the prediction-log flush on shutdown
accesslog = "-" if _settings.access_log else None  # CLINRISK_ACCESS_LOG=true: a line per request
errorlog = "-"
loglevel = "info"
preload_app = False  # each worker loads its own champion and starts its own threads
control_socket_disable = True  # several services may run on one host; none needs gunicornc

# The registry is polled off the request path, but must still fail fast when it is down:
# MLflow's HTTP client otherwise retries for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
# One process per core already; OpenMP threads in the scikit-learn fallback would fight them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Prometheus counters are summed across workers through files in this directory.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_settings.home / "prometheus"))


METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def _own_metrics_dir(directory: str) -> str:
    """The metrics directory, created 0700; refused when it is CLINRISK_HOME or someone else's."""
    path = Path(directory)
    if path.resolve() == _settings.home.resolve():
        raise SystemExit("PROMETHEUS_MULTIPROC_DIR must not be CLINRISK_HOME: its files are cleared at start")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.is_symlink():
        raise SystemExit("PROMETHEUS_MULTIPROC_DIR must be a directory owned by the service's user")
    return str(path)


def on_starting(server) -> None:
    """In the master: Ctrl-C stops gracefully; clear the metrics directory; migrate the prediction log."""
    from clinrisk import predlog

    # gunicorn treats SIGINT as a quick stop, which cuts requests in flight. A terminal's Ctrl-C
    # is the usual way to stop `clinrisk serve`, and is promised to be graceful: make it SIGTERM.
    server.handle_int = server.handle_term

    directory = _own_metrics_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for name in os.listdir(directory):
        if METRICS_FILE.fullmatch(name):  # only prometheus_client's own files, never other data
            os.remove(os.path.join(directory, name))
    try:
        predlog.connect(_settings.prediction_log_url).dispose()
    except predlog.PredictionLogError as exc:
        server.log.warning("%s (workers will retry)", exc)


def post_worker_init(worker) -> None:
    """In each worker, before it accepts requests: load the champion and start its threads."""
    import logging
    import signal
    import sys

    from clinrisk.web.runtime import WORKER_SWITCH_INTERVAL

    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
    # A terminal's Ctrl-C reaches the workers too (one process group). Like SIGTERM, it lets the
    # request in flight finish; gunicorn's own SIGINT handler exits in the middle of it.
    signal.signal(signal.SIGINT, worker.handle_exit)
    signal.siginterrupt(signal.SIGINT, False)
    package_log = logging.getLogger("clinrisk")
    package_log.handlers = list(worker.log.error_log.handlers)
    package_log.setLevel(logging.INFO)
    package_log.propagate = False
    worker.wsgi.extensions["clinrisk"].ensure_started()


def worker_exit(server, worker) -> None:
    """Stop listening, then flush the prediction log of a worker that is stopping.

    The worker has stopped accepting, but until its last copy of the listening socket is
    closed the kernel still queues new connections there, unanswered, for as long as the flush
    takes, and resets them when the process exits. Closed first, a new connection is refused at
    once, so a proxy in front (nginx's proxy_next_upstream) moves it to another replica.
    """
    for listener in getattr(worker, "sockets", ()):
        listener.close()
    app = getattr(worker, "wsgi", None)
    if app is not None and "clinrisk" in getattr(app, "extensions", {}):
        app.extensions["clinrisk"].close()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
