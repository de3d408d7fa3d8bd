"""The Flask prediction service. Gunicorn runs the factory: `gunicorn 'clinrisk.web:create_app()'`."""

from __future__ import annotations

from flask import Flask

from clinrisk.serving.champion import ModelSource
from clinrisk.settings import Settings, load_settings


def create_app(
    settings: Settings | None = None, *, model_source: ModelSource | None = None, watch: bool = True
) -> Flask:
    """Build the app; tests inject settings and a fake model source, production reads the environment."""
    from clinrisk.web import api, docs, metrics, ops, pages
    from clinrisk.web.errors import register_error_handlers
    from clinrisk.web.runtime import Runtime

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    runtime = Runtime(settings, model_source, watch=watch)
    app.extensions["clinrisk"] = runtime
    register_error_handlers(app)
    metrics.init_app(app)
    app.before_request(runtime.ensure_started)
    for blueprint in (api.bp, ops.bp, docs.bp):
        app.register_blueprint(blueprint)
    pages.init_app(app, settings)
    return app
