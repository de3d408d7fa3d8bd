"""Operational endpoints: /health (alive), /ready (champions loaded), /model and /models (what is served)."""

from __future__ import annotations

from flask import Blueprint, current_app

from clinrisk.web.auth import requires_auth

bp = Blueprint("ops", __name__)


def _runtime():
    return current_app.extensions["clinrisk"]


@bp.get("/health")
def health():
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    """200 when the default model's champion is loaded ('degraded' when from the cache), else 503.

    The status follows the default model, the one `/predict` and the patient page serve: a
    worker whose default model answers stays in the load balancer while another model waits
    for its first champion. Each model's own state is under `models`.
    """
    runtime = _runtime()
    state = runtime.holder.state
    model = {"name": state.loaded.name, "version": state.loaded.version} if state.loaded else None
    models = {
        m["name"]: {"status": m["status"], "reason": m["reason"], "version": m["version"]}
        for m in runtime.overview()
    }
    body = {"status": state.status, "reason": state.reason, "model": model, "models": models}
    return body, 200 if state.loaded else 503


@bp.get("/model")
@requires_auth
def model():
    """The default model: name, version, threshold, holdout metrics, provenance and scoring path."""
    return _described(None)


@bp.get("/models")
@requires_auth
def models():
    """Every model this service serves: kind, state, champion version and threshold."""
    runtime = _runtime()
    return {"default": runtime.default_name, "models": runtime.overview()}


@bp.get("/models/<name>")
@requires_auth
def named_model(name: str):
    """One model, as /model describes the default one; 404 for a model not served."""
    return _described(name)


def _described(name: str | None) -> dict:
    from clinrisk.web.api import served

    served(name)
    state, loaded = _runtime().serving(name)
    return {**loaded.describe(), "status": state.status, "reason": state.reason}
