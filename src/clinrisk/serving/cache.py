"""The last champion a worker loaded, kept on local disk so a restart survives a registry outage.

One directory per model under `<CLINRISK_HOME>/serving-cache/`, holding the champion's signed
bundle (ONNX, JSON, signature) and its signed promotion record: data, never a pickle. A cached
champion is verified with the signing key exactly as one from the registry, so a file planted
here is refused, never run. Files are written under a fresh name (O_EXCL) and renamed, so
several workers can save at once and a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from clinrisk import bundle
from clinrisk.settings import Settings

log = logging.getLogger(__name__)

PROMOTION_FILE = "promotion.json"
META_FILE = "meta.json"
FROM_CACHE, FROM_REGISTRY = "cache", "registry"


def cache_dir(settings: Settings, model_name: str) -> Path:
    return settings.home / "serving-cache" / model_name


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a new file beside `path` (O_EXCL, no symlink followed), then rename over it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(directory: Path, served: bundle.ServedModel) -> None:
    """Keep a verified champion's bundle and promotion record as the cached champion."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in served.files.items():
        write_atomically(directory / name, data)
    write_atomically(directory / PROMOTION_FILE, json.dumps(served.promotion).encode())
    meta = {
        "version": served.info.get("version"),
        "cached_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_atomically(directory / META_FILE, json.dumps(meta, indent=2).encode())


def load(directory: Path, key: bytes, name: str) -> bundle.ServedModel | None:
    """The cached champion when its bundle and promotion record verify, else None (and a warning)."""
    files = bundle.read_files(directory)
    if not files:
        return None
    try:
        promotion = json.loads((directory / PROMOTION_FILE).read_text())
        meta = json.loads(files.get(bundle.META_FILE, b"{}"))
        run_id = str(meta.get("run_id"))
        record = json.loads(promotion.get(bundle.PROMOTION_TAG, "{}"))
        version = str(record.get("version"))
        bundle.verify_promotion(promotion, key, name=name, version=version, run_id=run_id)
        served = bundle.read_bundle(files, key, name=name, version=version, run_id=run_id)
    except (OSError, ValueError, AttributeError, bundle.BundleError) as exc:
        log.warning("the cached champion of %s is refused: %s", name, exc)
        return None
    served.promotion = promotion
    return served


def load_champion(settings: Settings, name: str) -> tuple[bundle.ServedModel, str]:
    """The champion for batch scoring, and where it came from (`cache` or `registry`).

    The registry is always asked which version is the champion (`registry.alias_target`, one
    cheap read, no MLflow import); the cached bundle is used only when it verifies and is that
    very version and run. Otherwise (a moved alias, an empty or refused cache, a store read only
    through MLflow) the version is loaded from the registry as before and cached for next time.
    Raises what `registry.load_served_alias` raises.
    """
    from clinrisk import registry, signing

    target = registry.alias_target(settings, name, registry.CHAMPION)
    directory = cache_dir(settings, name)
    if target is not None:
        cached = load(directory, signing.load_key(settings), name)
        if cached is not None and (cached.info.get("version"), cached.meta.get("run_id")) == target:
            return cached, FROM_CACHE
        if cached is not None:
            log.info("the cached %s version %s is no longer the champion", name, cached.info.get("version"))
    served = registry.load_served_alias(settings, name, registry.CHAMPION)
    # Cache it only if it is still the champion: an alias moved during the download (a promotion
    # the web service has already cached) must not be overwritten with the version it replaced.
    now = registry.alias_target(settings, name, registry.CHAMPION)
    if now is not None and now != (served.info.get("version"), served.meta.get("run_id")):
        log.info(
            "%s's champion moved while version %s loaded; not caching it", name, served.info.get("version")
        )
        return served, FROM_REGISTRY
    try:
        save(directory, served)
    except OSError as exc:
        log.warning("cannot cache the champion in %s: %s", directory, exc)
    return served, FROM_REGISTRY
