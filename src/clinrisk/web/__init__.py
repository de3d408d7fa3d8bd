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
    from clinrisk.web.jsonio import OrjsonProvider
    from clinrisk.web.runtime import Runtime

    settings = settings or load_settings()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    if settings.proxy_hops:
        trust_proxies(app, settings.proxy_hops)
    runtime = Runtime(settings, model_source, watch=watch)
    app.extensions["clinrisk"] = runtime
    register_error_handlers(app)
    metrics.init_app(app)
    app.before_request(runtime.ensure_started)
    for blueprint in (api.bp, ops.bp, docs.bp):
        app.register_blueprint(blueprint)
    app.after_request(security_headers)
    pages.init_app(app, settings)
    return app


def trust_proxies(app: Flask, hops: int) -> None:
    """Take the client's address and scheme from the last `hops` X-Forwarded-* entries (werkzeug ProxyFix).

    Behind nginx every request comes from the proxy's address: without this, the failed-login
    limits (clinrisk.web.ratelimit) would count every client's failures as one client's.
    """
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


# The docs page runs Swagger UI's own inline start-up script; everything else is same-origin.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(response):
    """No caching of patient data, no MIME sniffing, and a content policy on pages (OWASP ASVS 14.4)."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.headers.get("Content-Type", "").startswith("text/html"):  # no MIME parse per answer
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    return response
