"""Secrets of the stack: generated once into CLINRISK_HOME (0600), and refused when weak and exposed.

`generate` writes `<CLINRISK_HOME>/credentials.env`, a `.env`-style file compose reads with
`--env-file` (or copy it to `.env`), holding a fresh random value for every password of the
stack. `refuse_weak` stops a service bound beyond the loopback when one of its secrets is a
placeholder or a default (OWASP ASVS 4.0, 2.5.4), naming the variable and nothing of its value.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from clinrisk.errors import ClinriskError

CREDENTIALS_FILE = "credentials.env"
MIN_SECRET_LENGTH = 12
# Every variable compose and the stack read a secret from.
SECRETS = (
    "POSTGRES_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "PREDICTIONS_DB_PASSWORD",
    "CLINRISK_ADMIN_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_WRITER_PASSWORD",
    "MLFLOW_READER_PASSWORD",
    "PREFECT_SERVER_API_AUTH_STRING",
    "EVIDENTLY_SECRET",
)
# The MLflow accounts of the stack: training and promotion write, the web service only reads.
WRITER, READER = "clinrisk-writer", "clinrisk-reader"
PLACEHOLDERS = {
    "admin", "password", "password1234", "changeme", "change-me", "secret", "postgres", "mlflow",
    "prefect", "predictions", "evidently", "admin:admin", "test", "default",
}  # fmt: skip
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me")  # .env.example's and compose's defaults


def is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def weak(value: str) -> bool:
    """A placeholder, a default, or shorter than MIN_SECRET_LENGTH."""
    secret = value.rpartition(":")[2] if value.count(":") == 1 else value  # "user:password" strings
    placeholder = secret.lower() in PLACEHOLDERS or secret.lower().startswith(PLACEHOLDER_PREFIXES)
    return placeholder or len(secret) < MIN_SECRET_LENGTH


def refuse_weak(address: str, values: Mapping[str, str | None]) -> None:
    """Raise ClinriskError naming each set-but-weak secret when `address` is beyond the loopback."""
    if is_loopback(address):
        return
    bad = [name for name, value in values.items() if value is not None and weak(value)]
    if bad:
        raise ClinriskError(
            f"refusing to listen on {address} with a placeholder or default secret in {', '.join(bad)}: "
            f"set a strong value (at least {MIN_SECRET_LENGTH} characters; `clinrisk credentials` "
            "generates them) or bind to 127.0.0.1"
        )


def url_password(url: str | None) -> str | None:
    """The password inside a database URL, if any."""
    if not url or "://" not in url:
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password
    except Exception:  # an unparsable URL has no password we can judge
        return None


def generate(home: Path) -> tuple[Path, list[str]]:
    """Write missing secrets to `<home>/credentials.env` (0600); returns the file and what was added."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / CREDENTIALS_FILE
    existing = dict(
        line.split("=", 1) for line in (path.read_text().splitlines() if path.exists() else []) if "=" in line
    )
    added = [name for name in SECRETS if name not in existing]
    values = {**existing, **{name: secrets.token_urlsafe(24) for name in added}}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write("".join(f"{k}={v}\n" for k, v in values.items()))
    os.replace(tmp, path)
    return path, added


def load(home: Path) -> dict[str, str]:
    """The secrets `generate` wrote into `<home>/credentials.env`; empty when there is none."""
    path = home / CREDENTIALS_FILE
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def client_environment(values: Mapping[str, str], role: str) -> dict[str, str]:
    """What an MLflow and Prefect client of the stack needs: `writer` (training, promotion, the
    CLI, the worker's flows) or `reader` (the web service, which never needs Prefect)."""
    if role == "reader":
        return {
            "MLFLOW_TRACKING_USERNAME": READER,
            "MLFLOW_TRACKING_PASSWORD": values["MLFLOW_READER_PASSWORD"],
        }
    return {
        "MLFLOW_TRACKING_USERNAME": WRITER,
        "MLFLOW_TRACKING_PASSWORD": values["MLFLOW_WRITER_PASSWORD"],
        "PREFECT_API_AUTH_STRING": values["PREFECT_SERVER_API_AUTH_STRING"],
    }


def use_stack_credentials(home: Path, role: str = "writer") -> None:
    """Let this process's MLflow and Prefect clients log in to the stack started with `home`.

    Only variables the environment does not set are filled in, and only when `make up` (or
    `clinrisk credentials`) generated `<home>/credentials.env`: a command pasted into a new
    shell then works as it did in the stack's own processes.
    """
    try:
        wanted = client_environment(load(home), role)
    except KeyError:  # no credentials file (no stack yet), or one from before these accounts
        return
    for name, value in wanted.items():
        os.environ.setdefault(name, value)


def mlflow_auth_config(path: Path, database_uri: str) -> Path:
    """MLflow's basic-auth settings (for MLFLOW_AUTH_CONFIG_PATH): nobody may do anything by default.

    The admin account's password comes from MLFLOW_AUTH_ADMIN_PASSWORD at the server's first
    start; the trainer (writer) and the web service (reader) get their own accounts and only
    the permissions granted to them.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


def main(argv: list[str]) -> int:
    """`python -m clinrisk.credentials check VAR...`: the guard the containers run before starting.

    The published address comes from CLINRISK_PUBLISHED_ADDRESS (compose passes
    CLINRISK_BIND_ADDRESS there); a variable holding a URL is judged by its password.
    `python -m clinrisk.credentials mlflow-auth-config PATH DATABASE_URI` writes MLflow's
    basic-auth settings for the mlflow container.
    """
    if len(argv) == 3 and argv[0] == "mlflow-auth-config":
        mlflow_auth_config(Path(argv[1]), argv[2])
        return 0
    if not argv or argv[0] != "check":
        print("usage: python -m clinrisk.credentials check VAR [VAR...]", file=sys.stderr)
        return 2
    address = os.environ.get("CLINRISK_PUBLISHED_ADDRESS", "0.0.0.0")
    values = {}
    for name in argv[1:]:
        value = os.environ.get(name)
        values[name] = url_password(value) if value and "://" in value else value
    try:
        refuse_weak(address, values)
    except ClinriskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
