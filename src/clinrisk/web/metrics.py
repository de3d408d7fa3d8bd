"""Prometheus metrics: requests and latency by endpoint, status and model, predictions by model version.

Under gunicorn every worker is a process, so `clinrisk serve` sets PROMETHEUS_MULTIPROC_DIR
(see gunicorn_conf) and `/metrics` sums the files all workers write. Without it (tests,
`flask run`) the app's own registry is shown.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's counters and histograms, registered on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["endpoint", "method", "status", "model"]
        self.requests = Counter(
            "clinrisk_http_requests",
            "HTTP requests by endpoint, method, status and model ('' for routes of no model)",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "clinrisk_http_request_duration_seconds",
            "HTTP request latency by endpoint, method, status and model",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "clinrisk_predictions",
            "Predictions served by model and version",
            ["model", "version"],
            registry=self.registry,
        )
        self._request_children: dict[tuple, tuple] = {}
        self._prediction_series: dict[tuple[str, str], Counter] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float, model: str = "") -> None:
        request_count, latency = self._request_series(endpoint, method, status, model)
        request_count.inc()
        latency.observe(seconds)

    def count_predictions(self, model: str, version: str, rows: int) -> None:
        series = self._prediction_series.get((model, version))
        if series is None:
            series = self._prediction_series[(model, version)] = self.predictions.labels(model, version)
        series.inc(rows)

    def _request_series(self, endpoint: str, method: str, status: int, model: str):
        """The counter and histogram children of one label set, looked up once per process.

        `labels()` validates and joins its arguments on every call; the set of label values is
        bounded (routes, methods, statuses, served models), so caching the children is safe.
        """
        key = (endpoint, method, status, model)
        found = self._request_children.get(key)
        if found is None:
            values = (endpoint, method, str(status), model)
            found = (self.requests.labels(*values), self.latency.labels(*values))
            self._request_children[key] = found
        return found

    def render(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=directory)
        return generate_latest(combined)


def _metrics() -> Metrics:
    return current_app.extensions["clinrisk"].metrics


def _start_timer() -> None:
    g.clinrisk_started = time.perf_counter()


def _record(response: Response) -> Response:
    started = g.pop("clinrisk_started", None)
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # Only a served model's name (set by the view once it found the model), never an unknown
        # name from the URL: a label per made-up name would grow the metrics without bound.
        model = g.get("model_name", "")
        seconds = time.perf_counter() - started
        _metrics().observe(endpoint, request.method, response.status_code, seconds, model)
    return response


def init_app(app: Flask) -> None:
    """Time every request, including those answered by an error handler."""
    app.before_request(_start_timer)
    app.after_request(_record)
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(_metrics().render(), content_type=CONTENT_TYPE_LATEST)
