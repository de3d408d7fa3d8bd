"""Every error as JSON: `{"error", "message", "errors": [{"field", "loc", "msg", "type"}]}`.

Bad input never produces a 500 or a traceback; an unexpected failure is logged here and
answered with a generic JSON 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success, with its status and the problems found."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors or []
        self.headers = headers or []


def problem(loc: tuple | list, msg: str, kind: str) -> dict[str, Any]:
    """One problem with its field path: ('age',) -> "age", (3, 'age') -> "[3].age", () -> "body"."""
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    field = "".join(parts).lstrip(".") or "body"
    return {"field": field, "loc": list(loc), "msg": msg, "type": kind}


def _respond(error: ApiError):
    body = {"error": error.error, "message": error.message, "errors": error.errors}
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers:
        response.headers.add(name, value)
    return response


def _http_error(exc: HTTPException):
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = f"the request body is larger than {limit} bytes"
        return _respond(ApiError(413, "payload_too_large", message, [problem((), message, "too_large")]))
    code = exc.code or 500
    name = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    kept = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]  # e.g. Allow on a 405
    return _respond(ApiError(code, name, exc.description or exc.name or "error", headers=kept))


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return _respond(ApiError(500, "internal_error", "internal error; the server log has the details"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _respond)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
