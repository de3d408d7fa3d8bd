"""The first user of a local stack: `admin`, with a generated password shown once."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clinrisk.errors import ClinriskError
from clinrisk.settings import Settings

ADMIN = "admin"


@dataclass(frozen=True)
class Admin:
    """Who to log in as: the password is set only on the run that created the account."""

    name: str
    password_file: Path
    new_password: str | None = None


def ensure_admin(settings: Settings, env: dict[str, str]) -> Admin | None:
    """Create `admin` on the first start; None when auth is off or users were added by hand."""
    if not settings.auth_enabled:
        return None
    password_file = settings.home / "admin-password"
    if password_file.exists():
        return Admin(ADMIN, password_file)
    if settings.users_file.exists():
        return None
    password = secrets.token_urlsafe(18)
    _write_private(password_file, password + "\n")
    try:
        add_user(ADMIN, password, env)
    except ClinriskError:
        password_file.unlink()
        raise
    return Admin(ADMIN, password_file, password)


def add_user(name: str, password: str, env: dict[str, str]) -> None:
    """Add a user through the web service's own command (`clinrisk user add NAME`, password on stdin)."""
    from clinrisk.stack.processes import executable

    command = [executable("clinrisk"), "user", "add", name]
    result = subprocess.run(command, input=password + "\n", env=env, capture_output=True, text=True)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise ClinriskError(f"could not create the user {name}: {output}")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
