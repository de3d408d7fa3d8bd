"""Operational endpoints: /health (alive), /ready (a champion is loaded) and /model (what is served)."""

from __future__ import annotations

from flask import Blueprint, current_app

from clinrisk.web.auth import requires_auth

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    """200 when a champion is loaded (status 'degraded' when it came from the local cache), else 503."""
    state = current_app.extensions["clinrisk"].holder.state
    model = {"name": state.loaded.name, "version": state.loaded.version} if state.loaded else None
    return {"status": state.status, "reason": state.reason, "model": model}, 200 if state.loaded else 503


@bp.get("/model")
@requires_auth
def model():
    """Name, version, threshold, holdout metrics, provenance and the scoring path in use."""
    state, loaded = current_app.extensions["clinrisk"].serving()
    return {**loaded.describe(), "status": state.status, "reason": state.reason}
