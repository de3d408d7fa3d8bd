"""Authentication of protected endpoints: HTTP Basic users and Bearer API keys from the users file.

On by default; `CLINRISK_AUTH_ENABLED=false` turns it off for local play. A failed check
answers 401 with both challenges in `WWW-Authenticate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request

from clinrisk.web.errors import ApiError
from clinrisk.web.users import UserError, UserStore

log = logging.getLogger(__name__)

REALM = "clinrisk"
CHALLENGES = [
    ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
    ("WWW-Authenticate", f'Bearer realm="{REALM}"'),
]


def authenticate(users: UserStore) -> str:
    """The name of the caller, or a 401 ApiError."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    user = None
    try:
        if scheme.lower() == "basic" and request.authorization is not None:
            user = users.check_password(
                request.authorization.username or "", request.authorization.password or ""
            )
        elif scheme.lower() == "bearer":
            user = users.check_api_key(credentials.strip())
        no_users = users.empty
    except UserError as exc:
        log.error("%s", exc)
        raise ApiError(503, "auth_unavailable", "the users file cannot be read; see the server log") from None
    if user is None:
        message = "invalid credentials" if header else "credentials required: HTTP Basic or a Bearer API key"
        if no_users:
            message += "; no users exist yet: create one with `clinrisk user add NAME`"
        raise ApiError(401, "unauthorized", message, headers=CHALLENGES)
    return user


def requires_auth(view: Callable) -> Callable:
    """Let the view run only for an authenticated caller (unless auth is turned off)."""

    @wraps(view)
    def guarded(*args, **kwargs):
        runtime = current_app.extensions["clinrisk"]
        g.user = authenticate(runtime.users) if runtime.settings.auth_enabled else None
        return view(*args, **kwargs)

    return guarded
