"""The users file: HTTP Basic passwords and API keys, stored only as hashes.

Passwords are hashed with scrypt and a random salt; API keys are long random tokens
(`crk_<id>_<secret>`), so a SHA-256 of the key is enough. Every comparison is constant-time.
The file is JSON, written atomically with mode 0600, by default `<CLINRISK_HOME>/users.json`.
Every change reads, edits and replaces the file under one file lock (filelock), so
concurrent `clinrisk user add` and `user remove` calls lose nothing. Passwords need at
least 12 characters (OWASP ASVS 4.0, 2.1.1).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clinrisk.errors import ClinriskError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_PREFIX = "crk"
MIN_PASSWORD_LENGTH = 12
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
VERIFIED_CACHE_SIZE = 1024
# How long the service trusts its copy of the users file before reading it again: a user added,
# removed or a key revoked takes effect within this time. Reading and hashing the file on every
# check cost a file open and read per request, two or three times per request.
RECHECK_SECONDS = 1.0
API_KEY_TOKEN = "\0api-key"  # the name under which accepted API keys are remembered (no user has it)


class UserError(ClinriskError):
    """A users-file operation cannot be done (bad name, unknown user, unreadable file)."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored scrypt hash (constant-time comparison)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its public id."""
    key_id = secrets.token_hex(4)
    return f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}", key_id


def read_users(path: Path) -> dict[str, dict[str, Any]]:
    """Every user in the file ({} when the file does not exist)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the users file {path}: {exc}") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise UserError(f"the users file {path} has no 'users' object")
    return users


def write_users(path: Path, users: dict[str, dict[str, Any]]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"users": users}, out, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def edited_users(path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Read, let the caller edit, and atomically replace the users file, all under a file lock."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", mode=0o600):
        users = read_users(path)
        yield users
        write_users(path, users)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_user(path: Path, name: str, password: str | None, *, replace: bool = False) -> None:
    """Create a user (or, with `replace`, set a new password and keep the user's API keys)."""
    if not NAME_PATTERN.match(name):
        raise UserError(f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    hashed = hash_password(password) if password is not None else None  # scrypt outside the lock
    with edited_users(path) as users:
        if name in users and not replace:
            raise UserError(f"user '{name}' already exists (use --replace to set a new password)")
        entry = users.get(name) or {"created_at": _now(), "api_keys": {}}
        entry["password"] = hashed
        users[name] = entry


def add_api_key(path: Path, name: str) -> str:
    """Give a user a new API key; the key itself is returned once and never stored."""
    key, key_id = new_api_key()
    with edited_users(path) as users:
        if name not in users:
            raise UserError(f"no user '{name}' in {path}")
        users[name].setdefault("api_keys", {})[key_id] = {"sha256": key_digest(key), "created_at": _now()}
    return key


def remove_user(path: Path, name: str) -> None:
    with edited_users(path) as users:
        if users.pop(name, None) is None:
            raise UserError(f"no user '{name}' in {path}")


def list_users(path: Path) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "password": bool(entry.get("password")),
            "api_keys": sorted(entry.get("api_keys", {})),
            "created_at": entry.get("created_at"),
        }
        for name, entry in sorted(read_users(path).items())
    ]


class UserStore:
    """The users file as the service sees it: re-read when its content changes, checked in constant time.

    A successful password check is remembered (as an HMAC under a per-process random key),
    so a client sending Basic credentials pays for scrypt once, not on every request. The file
    is read again at most every `recheck_seconds` (a change takes effect within that time).
    """

    def __init__(self, path: Path, recheck_seconds: float = RECHECK_SECONDS):
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self._next_check = 0.0  # time.monotonic() after which the file is read again
        self._lock = threading.Lock()
        self._stamp: str | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._verified: set[bytes] = set()
        self._pepper = secrets.token_bytes(32)
        self._dummy_hash: str | None = None

    @property
    def empty(self) -> bool:
        self._reload_if_changed()
        return not self._users

    def _token(self, name: str, password: str) -> bytes:
        return hmac.new(self._pepper, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    def recently_verified(self, name: str, password: str) -> bool:
        """True when this exact password was verified since the file last changed (no scrypt)."""
        self._reload_if_changed()
        return self._token(name, password) in self._verified

    def check_password(self, name: str, password: str) -> str | None:
        """The user name when the password is right, else None."""
        self._reload_if_changed()
        token = self._token(name, password)
        if token in self._verified:
            return name
        stored = (self._users.get(name) or {}).get("password")
        if not stored:
            verify_password(password, self._dummy())  # same cost as a real check
            return None
        if not verify_password(password, stored):
            return None
        self._remember(token)
        return name

    def key_recently_verified(self, key: str) -> bool:
        """True when this API key was accepted since the file last changed."""
        self._reload_if_changed()
        return self._token(API_KEY_TOKEN, key) in self._verified

    def check_api_key(self, key: str) -> str | None:
        """The owner of a valid API key, else None."""
        self._reload_if_changed()
        parts = key.split("_")
        owner, expected = self._keys.get(parts[1] if len(parts) >= 3 else "", ("", "0" * 64))
        valid = hmac.compare_digest(key_digest(key), expected)
        if not (valid and owner):
            return None
        self._remember(self._token(API_KEY_TOKEN, key))
        return owner

    def _remember(self, token: bytes) -> None:
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified.add(token)

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_hex(8))
        return self._dummy_hash

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        # A content hash, not mtime and size: two edits within one mtime tick may keep both.
        try:
            stamp = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            raise UserError(f"cannot read the users file: {exc.strerror}") from None
        if stamp != self._stamp:
            with self._lock:
                users = read_users(self.path) if stamp else {}
                self._keys = {
                    key_id: (name, entry["sha256"])
                    for name, user in users.items()
                    for key_id, entry in (user.get("api_keys") or {}).items()
                }
                self._users = users
                self._verified = set()
                self._stamp = stamp
        self._next_check = now + self.recheck_seconds  # only after a good read: an error repeats
