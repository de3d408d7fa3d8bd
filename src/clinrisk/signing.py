"""The HMAC key that signs model bundles and promotion records, kept outside the registry.

The key lives in a file the MLflow server cannot write: `CLINRISK_SIGNING_KEY_FILE`, by
default `<CLINRISK_HOME>/signing.key` (mode 0600), or a Docker secret under compose. Whoever
can write to the registry but does not hold this key can register versions and move aliases,
but cannot make the service load them. HMAC-SHA256 as in RFC 2104 (Python's `hmac`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from clinrisk.errors import ClinriskError
from clinrisk.settings import Settings

KEY_FILE = "signing.key"
KEY_BYTES = 32
MIN_KEY_BYTES = 32


class SigningError(ClinriskError):
    """The signing key is missing or unusable, or a signature does not verify."""


def key_path(settings: Settings) -> Path:
    return Path(settings.signing_key_file or settings.home / KEY_FILE)


def load_key(settings: Settings) -> bytes:
    """The signing key (hex text in the file); raises SigningError naming the variable."""
    path = key_path(settings)
    try:
        text = path.read_text().strip()
    except OSError:
        raise SigningError(
            "no model signing key: set CLINRISK_SIGNING_KEY_FILE or run `clinrisk models keygen`"
        ) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SigningError("CLINRISK_SIGNING_KEY_FILE does not hold a hex key") from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningError(f"CLINRISK_SIGNING_KEY_FILE holds a key shorter than {MIN_KEY_BYTES} bytes")
    return key


def ensure_key(settings: Settings) -> bytes:
    """The signing key, created (0600, never overwritten) when the trainer has none yet."""
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return load_key(settings)  # another process created it first
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(KEY_BYTES) + "\n")
    return load_key(settings)


def sign(key: bytes, purpose: str, payload: bytes) -> str:
    """Hex HMAC-SHA256 of `payload`, bound to a purpose so one signature cannot stand for another."""
    return hmac.new(key, purpose.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def verify(key: bytes, purpose: str, payload: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, purpose, payload), signature.strip())
