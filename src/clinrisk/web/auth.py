"""Authentication of protected endpoints: HTTP Basic users and Bearer API keys from the users file.

On by default; `CLINRISK_AUTH_ENABLED=false` turns it off for local play. A failed check
answers 401 with both challenges in `WWW-Authenticate`; too many failures from one client
or for one user answer 429 with `Retry-After` before any password is hashed. Successes and
failures go to the `clinrisk.audit` log (user, key id, client address; never a secret).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request

from clinrisk.web.errors import ApiError
from clinrisk.web.ratelimit import FailureLimiter
from clinrisk.web.users import UserError, UserStore

log = logging.getLogger(__name__)
audit = logging.getLogger("clinrisk.audit")

REALM = "clinrisk"
CHALLENGES = [
    ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
    ("WWW-Authenticate", f'Bearer realm="{REALM}"'),
]


def _claimed(scheme: str, credentials: str) -> tuple[str, str]:
    """Who the caller claims to be, safe to log: ('alice', '') or ('', 'key id')."""
    if scheme == "basic" and request.authorization is not None:
        return request.authorization.username or "", ""
    parts = credentials.split("_")
    return "", parts[1] if scheme == "bearer" and len(parts) >= 3 else ""


def _check(users: UserStore, scheme: str, credentials: str) -> str | None:
    if scheme == "basic" and request.authorization is not None:
        return users.check_password(
            request.authorization.username or "", request.authorization.password or ""
        )
    if scheme == "bearer":
        return users.check_api_key(credentials.strip())
    return None


def _refuse_if_limited(limiter: FailureLimiter | None, keys: list[str], name: str, key_id: str) -> None:
    wait = limiter.retry_after(*keys) if limiter is not None else None
    if wait is not None:
        audit.warning(
            "auth refused, too many failures: user=%r key=%r client=%s", name, key_id, request.remote_addr
        )
        raise ApiError(
            429,
            "too_many_failures",
            "too many failed logins; try again later",
            headers=[("Retry-After", str(wait))],
        )


def remembered_caller(users: UserStore, scheme: str, name: str, credentials: str) -> bool:
    """Whether these exact credentials were accepted since the users file last changed: then no
    scrypt is paid and no audit line is written again (one per caller, not one per request)."""
    if scheme == "bearer":
        return users.key_recently_verified(credentials.strip())
    return bool(name) and users.recently_verified(name, request.authorization.password or "")


def authenticate(users: UserStore, limiter: FailureLimiter | None = None) -> str:
    """The name of the caller, or a 401 (wrong credentials) or 429 (too many failures) ApiError."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    name, key_id = _claimed(scheme, credentials)
    keys = [f"client:{request.remote_addr}"] + ([f"user:{name}"] if name else [])
    try:
        remembered = remembered_caller(users, scheme, name, credentials)
        if name and not remembered:  # a password that would cost scrypt: refuse floods first
            _refuse_if_limited(limiter, keys, name, key_id)
        user = _check(users, scheme, credentials)
        no_users = users.empty
    except UserError as exc:
        log.error("%s", exc)
        raise ApiError(503, "auth_unavailable", "the users file cannot be read; see the server log") from None
    if user is None:
        _refuse_if_limited(limiter, keys, name, key_id)
        if header and limiter is not None:
            limiter.failed(*keys)
        audit.warning("auth failed user=%r key=%r client=%s", name, key_id, request.remote_addr)
        message = "invalid credentials" if header else "credentials required: HTTP Basic or a Bearer API key"
        if no_users:
            message += "; no users exist yet: create one with `clinrisk user add NAME`"
        raise ApiError(401, "unauthorized", message, headers=CHALLENGES)
    if not remembered:
        audit.info("auth ok user=%r key=%r client=%s", user, key_id, request.remote_addr)
    return user


def check_form_login(
    users: UserStore, limiter: FailureLimiter | None, name: str, password: str
) -> str | None:
    """A login from the page's form: the user, or None for wrong credentials.

    The same limits and audit lines as the API: raises ApiError 429 (with Retry-After) when the
    client or the user has failed too often, before any password is hashed.
    """
    keys = [f"client:{request.remote_addr}", f"user:{name}"]
    _refuse_if_limited(limiter, keys, name, "")
    user = users.check_password(name, password)
    if user is None:
        if limiter is not None:
            limiter.failed(*keys)
        audit.warning("page login failed user=%r client=%s", name, request.remote_addr)
    else:
        audit.info("page login ok user=%r client=%s", user, request.remote_addr)
    return user


def requires_auth(view: Callable) -> Callable:
    """Let the view run only for an authenticated caller (unless auth is turned off)."""

    @wraps(view)
    def guarded(*args, **kwargs):
        runtime = current_app.extensions["clinrisk"]
        g.user = authenticate(runtime.users, runtime.limiter) if runtime.settings.auth_enabled else None
        return view(*args, **kwargs)

    return guarded
