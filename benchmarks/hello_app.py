"""The floor: a hello-world Flask app, served by the gunicorn configuration of `clinrisk serve`.

    gunicorn -c python:clinrisk.web.gunicorn_conf --chdir benchmarks 'hello_app:create_app()'

It reads the body and answers a small JSON object: what this stack costs before any work. The
configuration's worker hooks find a runtime that does nothing.
"""

from __future__ import annotations

from flask import Flask, jsonify, request


class _NoRuntime:
    """What gunicorn_conf's hooks call on `app.extensions["clinrisk"]`: nothing to start or stop."""

    def ensure_started(self) -> None:
        pass

    def close(self) -> None:
        pass


def create_app() -> Flask:
    app = Flask(__name__)
    app.extensions["clinrisk"] = _NoRuntime()

    @app.post("/predict")
    def predict():
        request.get_data()
        return jsonify({"hello": "world"})

    @app.get("/ready")
    def ready():
        return jsonify({"status": "ready"})

    return app
