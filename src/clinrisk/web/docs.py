"""GET /openapi.json (generated from the declared schema) and GET /docs (Swagger UI, served locally)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template_string, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from clinrisk.web.openapi import build_document

bp = Blueprint("docs", __name__)

ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }}</title>
  <link rel="stylesheet" href="{{ url_for('docs.asset', filename='swagger-ui.css') }}">
  <link rel="icon" href="{{ url_for('docs.asset', filename='favicon-32x32.png') }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ url_for('docs.asset', filename='swagger-ui-bundle.js') }}"></script>
  <script src="{{ url_for('docs.asset', filename='swagger-ui-standalone-preset.js') }}"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "{{ url_for('docs.openapi') }}",
        dom_id: "#swagger-ui",
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi():
    runtime = current_app.extensions["clinrisk"]
    specs = {name: runtime.current_spec(name) for name in runtime.models}
    return jsonify(build_document(specs, runtime.default_name, runtime.settings))


@bp.get("/docs")
def docs():
    return render_template_string(PAGE, title="clinrisk API")


@bp.get("/docs/<path:filename>")
def asset(filename: str):
    """Swagger UI's own files from the swagger-ui-bundle package: no CDN."""
    if filename not in ASSETS:
        return current_app.response_class(status=404)
    return send_from_directory(swagger_ui_path, filename)
