"""The patient pages and the model cards, server-rendered (Jinja, no JavaScript, no CDN).

`/` assesses a patient with the default model (CLINRISK_MODEL_NAME), `/models/<name>/page` with
any served model, its form built from that champion's spec; a regression shows its predicted
value (no probability, threshold or reasons) and takes the observed value as its outcome.

Login uses the same users file as the API, kept in Flask's signed session cookie (HttpOnly,
SameSite=Lax); every form carries a flask-wtf CSRF token. Predictions made here go through
the API's own scoring and prediction log; a user may record the outcome only of a
prediction made in their own session.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from functools import wraps
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf

from clinrisk.errors import RegistryError
from clinrisk.predlog import PredictionLogError
from clinrisk.web import cards
from clinrisk.web.api import explanations_for, score, served
from clinrisk.web.auth import check_form_login
from clinrisk.web.errors import ApiError
from clinrisk.web.patient_form import bar_chart, form_fields, holdout_terms, parse_form

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__, template_folder="templates")
KEPT_PREDICTIONS = 50  # ids remembered per session, for recording outcomes
SECRET_FILE = "session-secret"
ERROR_TITLES = {"unknown_model": "Unknown model", "invalid_outcome": "Outcome not recorded"}


def session_secret(settings) -> str:
    """The configured secret, else one created once in the state directory (shared by workers)."""
    if settings.session_secret:
        return settings.session_secret
    path = Path(settings.ensure_home()) / SECRET_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text().strip()


class CachedSignerSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signer built once per key instead of per request.

    Flask builds an itsdangerous serializer on every request, cookie or not: about a tenth of
    an API request's time. The key only changes when the app's SECRET_KEY does.
    """

    _cached: tuple[object, object] | None = None

    def get_signing_serializer(self, app: Flask):
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, super().get_signing_serializer(app))
        return self._cached[1]

    def save_session(self, app: Flask, session, response) -> None:
        """Nothing to do for a session the request never touched (every API request): Flask would
        read seven cookie settings to conclude the same. Pages read the session, so they refresh it."""
        if not session.accessed and not session.modified:
            return
        super().save_session(app, session, response)


def init_app(app: Flask, settings) -> None:
    """Session cookie settings and the blueprint; the JSON API stays free of CSRF checks."""
    if not app.config.get("SECRET_KEY"):  # Flask's default config holds the key as None
        app.config["SECRET_KEY"] = session_secret(settings)
    app.session_interface = CachedSignerSessions()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.register_blueprint(bp)


def _runtime():
    return current_app.extensions["clinrisk"]


def login_required(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        if _runtime().settings.auth_enabled and not session.get("user"):
            return redirect(url_for("pages.login_form", next=request.path))
        return view(*args, **kwargs)

    return guarded


def _check_csrf() -> None:
    try:
        validate_csrf(request.form.get("csrf_token", ""))
    except Exception:  # flask-wtf raises wtforms' ValidationError
        raise CSRFError("The form has expired or did not come from this site; reload the page.") from None


@bp.app_context_processor
def _template_globals():
    return {"csrf_token": generate_csrf, "user": session.get("user")}


@bp.get("/login")
def login_form():
    return render_template("login.html", error=None, next=request.args.get("next", "/"))


@bp.post("/login")
def login():
    _check_csrf()
    name, password = request.form.get("username", ""), request.form.get("password", "")
    target = request.form.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # never redirect to another site
    runtime = _runtime()
    try:
        user = check_form_login(runtime.users, runtime.limiter, name, password)
    except ApiError as exc:  # too many failures: the page says so, with the same Retry-After
        return render_template("login.html", error=exc.message, next=target), exc.status, exc.headers
    if user is None:
        return render_template("login.html", error="Wrong user name or password.", next=target), 401
    session.clear()
    session["user"] = name
    return redirect(target)


@bp.post("/logout")
def logout():
    _check_csrf()
    session.clear()
    return redirect(url_for("pages.login_form"))


def _urls(name: str) -> dict[str, str]:
    """Where a model's page posts its form and outcomes: the default model keeps `/` and `/outcome`."""
    if name == _runtime().default_name:
        return {"page_url": url_for("pages.patient_page"), "outcome_url": url_for("pages.outcome")}
    return {
        "page_url": url_for("pages.model_page", name=name),
        "outcome_url": url_for("pages.model_outcome", name=name),
    }


def _served_models() -> list[dict[str, str]]:
    """Every served model with the address of its page, the default first (for the page's model list)."""
    return [{"name": name, "url": _urls(name)["page_url"]} for name in _runtime().models]


def _page(loaded, **values):
    spec = loaded.model.spec
    return render_template(
        "patient.html",
        spec=spec,
        loaded=loaded,
        regression=loaded.model.is_regression,
        fields=form_fields(spec),
        terms=holdout_terms(loaded.model.info, spec.target.label),
        models=_served_models(),
        **_urls(loaded.name),
        **{"values": {}, "errors": {}, "answer": None, "recorded": None, **values},
    )


def _champion(name: str | None):
    """The model's champion; an unknown name is a 404 and a model without one a 503 (both as pages)."""
    served(name)  # labels the request's metrics with the model, as the API does
    _, loaded = _runtime().serving(name)
    return loaded


@bp.get("/")
@login_required
def patient_page():
    return _page(_champion(None))


@bp.get("/models/<name>/page")
@login_required
def model_page(name: str):
    """The patient form of any served model, built from its champion's spec."""
    return _page(_champion(name))


def _explained(loaded, record) -> dict:
    """The reasons with their bar chart, or why there are none (the page never fails for it)."""
    try:
        explanation = explanations_for(loaded, [record])[0]
    except ApiError as exc:
        return {"unavailable": exc.message}
    return {**explanation, "chart": bar_chart(explanation["reasons"])}


def _remember(prediction_id: str) -> None:
    kept = [*session.get("predictions", []), prediction_id][-KEPT_PREDICTIONS:]
    session["predictions"] = kept


def _assess(name: str | None):
    """Score the patient typed in, log it like an API prediction, and show the answer and reasons."""
    _check_csrf()
    runtime = _runtime()
    loaded = _champion(name)
    record, errors = parse_form(loaded.model.spec, loaded.record_model, request.form)
    if errors:
        return _page(loaded, values=request.form, errors=errors), 422
    results, rows = score(loaded, [record], session.get("user"))
    runtime.writer.submit(rows)
    runtime.metrics.count_predictions(loaded.name, loaded.version, len(rows))
    _remember(results[0]["prediction_id"])
    answer = {**results[0], "explanation": _explained(loaded, record)}
    return _page(loaded, values=request.form, answer=answer)


@bp.post("/")
@login_required
def assess():
    """Assess a patient with the default model's champion."""
    return _assess(None)


@bp.post("/models/<name>/page")
@login_required
def assess_model(name: str):
    """Assess a patient with the named model's champion."""
    return _assess(name)


def _observed(loaded, text: str) -> float | int:
    """The outcome typed or clicked: 0/1 for a classification, a finite number for a regression."""
    if not loaded.model.is_regression:
        if text not in ("0", "1"):
            abort(404)
        return int(text)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(422, "invalid_outcome", "The observed value must be a number, e.g. 152.")
    return value


def _record_outcome(name: str | None):
    """Record the observed outcome of a prediction this model made in this session."""
    _check_csrf()
    runtime = _runtime()
    loaded = _champion(name)
    prediction_id = request.form.get("prediction_id", "")
    if prediction_id not in session.get("predictions", []):
        abort(404)
    value = _observed(loaded, request.form.get("outcome", "").strip())
    runtime.writer.flush()
    try:
        receipt = runtime.writer.record_feedback(
            prediction_id, value, session.get("user"), model_name=loaded.name
        )
    except PredictionLogError as exc:
        raise ApiError(503, "log_unavailable", str(exc)) from None
    if receipt is None:  # not in the log, or made by another model
        abort(404)
    return _page(loaded, recorded=receipt)


@bp.post("/outcome")
@login_required
def outcome():
    """Record the outcome of a default-model prediction made in this session."""
    return _record_outcome(None)


@bp.post("/models/<name>/outcome")
@login_required
def model_outcome(name: str):
    """Record the outcome of a named model's prediction made in this session."""
    return _record_outcome(name)


def _champion_card(name: str | None):
    """A redirect to the card of the model's champion (404 or 503 page as for `_champion`)."""
    loaded = _champion(name)
    return redirect(url_for("pages.version_card", name=loaded.name, version=loaded.version))


@bp.get("/model/card")
@login_required
def champion_card():
    """The card of the default model's champion."""
    return _champion_card(None)


@bp.get("/models/<name>/card")
@login_required
def model_champion_card(name: str):
    """The card of the named model's champion."""
    return _champion_card(name)


@bp.get("/models/<name>/<version>/card")
@login_required
def version_card(name: str, version: str):
    """The card of any registered version, with the gate's decision as tagged now."""
    if not version.isdigit():
        shown = version if len(version) <= 32 else version[:32] + "…"
        message = f"'{shown}' is not a version: versions are numbered 1, 2, 3, …"
        return render_template("message.html", title="No model card", message=message), 404
    try:
        return cards.card_html(_runtime(), name, version)
    except cards.CardNotFound as exc:
        return render_template("message.html", title="No model card", message=str(exc)), 404
    except RegistryError as exc:
        log.warning("card of %s version %s: %s", name, version, exc)
        return render_template("message.html", title="Model registry unavailable", message=str(exc)), 503


@bp.errorhandler(CSRFError)
def _expired_form(exc: CSRFError):
    return render_template("message.html", title="Form expired", message=exc.description), 400


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    """An unknown model, a model without a champion, a log that is down: a page saying so, never a 500."""
    title = ERROR_TITLES.get(exc.error, "Cannot answer now")
    page = render_template("message.html", title=title, message=exc.message, models=_served_models())
    return page, exc.status, exc.headers
