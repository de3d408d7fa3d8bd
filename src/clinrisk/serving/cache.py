"""The last champion a worker loaded, kept on local disk so a restart survives a registry outage.

One directory per model under `<CLINRISK_HOME>/serving-cache/`, holding the joblib RiskModel
(threshold, spec and version inside) and a small JSON file for people. Files are written
to a temporary name and renamed, so several workers can save at once and a reader never
sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from clinrisk.model import RiskModel
from clinrisk.settings import Settings

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
META_FILE = "meta.json"


def cache_dir(settings: Settings, model_name: str) -> Path:
    return settings.home / "serving-cache" / model_name


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename over `path`."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(directory: Path, model: RiskModel) -> None:
    """Keep `model` as the cached champion (the version is read from `model.info`)."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / MODEL_FILE, lambda tmp: joblib.dump(model, tmp))
    meta = {
        "version": model.info.get("version"),
        "cached_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_atomically(directory / META_FILE, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))


def load(directory: Path) -> RiskModel | None:
    """The cached champion, or None when there is none or it cannot be read."""
    import joblib

    path = directory / MODEL_FILE
    if not path.exists():
        return None
    try:
        model = joblib.load(path)
    except Exception as exc:  # a corrupt or incompatible pickle: treat as no cache
        log.warning("cannot read the cached champion %s: %s", path, exc)
        return None
    return model if isinstance(model, RiskModel) else None
