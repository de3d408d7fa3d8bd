"""The champion a worker serves, and how it changes: loaded off the request path, swapped atomically.

A request reads `ChampionHolder.state` once and scores with the `LoadedModel` inside it, so
a swap never changes the model under a request in flight. `refresh()` asks the registry
which version is the champion, loads its signed bundle (ONNX + JSON, verified with the
signing key; never a pickle) before swapping, and falls back to the local cache, verified
the same way, when the registry cannot be reached. A version that does not verify is
refused: the current champion keeps serving and `/ready` says why.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from clinrisk import registry, signing
from clinrisk.bundle import BundleError, ServedModel
from clinrisk.errors import RegistryError
from clinrisk.serving import cache
from clinrisk.serving.scorer import Scorer, ScoringPath
from clinrisk.settings import Settings

log = logging.getLogger(__name__)

READY, DEGRADED, UNAVAILABLE, LOADING = "ready", "degraded", "unavailable", "loading"
FROM_REGISTRY, FROM_CACHE = "registry", "cache"


@dataclass(frozen=True)
class LoadedModel:
    """One champion version, ready to score: never mutated once built."""

    name: str
    version: str
    model: ServedModel
    scorer: Scorer
    scoring: ScoringPath
    origin: str
    loaded_at: str

    @property
    def record_model(self):
        return self.model.spec.record_model

    def describe(self) -> dict[str, Any]:
        """What `/model` shows."""
        info = self.model.info
        return {
            "name": self.name,
            "version": self.version,
            "threshold": self.model.threshold,
            "candidate": info.get("candidate"),
            "holdout_metrics": info.get("holdout_metrics", {}),
            "trained_at": info.get("trained_at"),
            "data_sha256": info.get("data_sha256"),
            "run_id": info.get("run_id"),
            "scoring_path": self.scoring.as_dict(),
            "loaded_from": self.origin,
            "loaded_at": self.loaded_at,
        }


@dataclass(frozen=True)
class ServingState:
    status: str
    reason: str | None
    loaded: LoadedModel | None


class ModelSource(Protocol):
    """Where champions come from: the MLflow registry in production, a fake in unit tests."""

    def champion_version(self) -> str | None: ...

    def load(self, version: str) -> ServedModel: ...

    def pipeline_loader(self, model: ServedModel) -> Callable[[], bytes | None] | None: ...


class RegistrySource:
    """The `champion` alias of one model in the MLflow registry."""

    def __init__(self, settings: Settings, model_name: str):
        self.settings = settings
        self.model_name = model_name

    def champion_version(self) -> str | None:
        return registry.alias_version(self.settings, self.model_name, registry.CHAMPION)

    def load(self, version: str) -> ServedModel:
        return registry.load_served(self.settings, self.model_name, version)

    def pipeline_loader(self, model: ServedModel) -> Callable[[], bytes | None] | None:
        """How a champion read from the local cache fetches its pipeline from its run, for
        explanations (the cache keeps only what scoring needs; the bytes are checked against
        the bundle's signed hash when used)."""
        run_id = model.meta.get("run_id")
        return functools.partial(registry.pipeline_bytes, self.settings, str(run_id)) if run_id else None


class ChampionHolder:
    """The current serving state of one model, replaced as a whole on every change."""

    def __init__(self, settings: Settings, source: ModelSource, model_name: str | None = None):
        self.settings = settings
        self.source = source
        self.model_name = model_name or settings.model_name
        self.cache_dir = cache.cache_dir(settings, self.model_name)
        self._state = ServingState(LOADING, "the champion has not been loaded yet", None)
        self._lock = threading.Lock()
        self._cache_refusal: str | None = None  # the last reason the cache could not be read, logged once

    @property
    def state(self) -> ServingState:
        return self._state

    def start_from_cache(self) -> bool:
        """At worker start, serve the cached champion at once if it verifies; True when it does.

        No registry round trip and no download: the worker is ready in the time it takes to
        read and verify a few files. The state stays 'degraded' until the first `refresh()`
        (the watcher's, right after) confirms the version or swaps in the registry's champion.
        """
        with self._lock:
            if self._state.loaded is not None:
                return True
            cached = self._load_cache()
            if cached is None:
                return False
            loaded = self._prepare(cached, str(cached.info.get("version", "unknown")), FROM_CACHE)
            reason = f"serving the cached version {loaded.version} until the registry confirms it"
            self._state = ServingState(DEGRADED, reason, loaded)
            self._log_change(ServingState(LOADING, None, None), self._state)
        return True

    def refresh(self) -> ServingState:
        """Check the registry once and swap in a new champion if there is one (never raises)."""
        with self._lock:
            previous = self._state
            current = previous.loaded
            try:
                self._state = self._next_state(current)
            except Exception as exc:  # a broken version must not stop the service
                log.exception("refreshing the champion of %s failed", self.model_name)
                self._state = self._fallback(
                    f"loading the champion failed: {type(exc).__name__}: {exc}", current
                )
            self._log_change(previous, self._state)
        return self._state

    def _log_change(self, previous: ServingState, state: ServingState) -> None:
        loaded = state.loaded
        if loaded is not None and loaded is not previous.loaded:
            log.info(
                "serving %s version %s from the %s (%s path: %s)",
                loaded.name,
                loaded.version,
                loaded.origin,
                loaded.scoring.active,
                loaded.scoring.reason,
            )
        if state.status != previous.status or state.reason != previous.reason:
            level = logging.INFO if state.status == READY else logging.WARNING
            reason = state.reason or "champion loaded from the registry"
            log.log(level, "%s: %s: %s", self.model_name, state.status, reason)

    def _next_state(self, current: LoadedModel | None) -> ServingState:
        try:
            version = self.source.champion_version()
            if version is None:
                return self._fallback(f"the registry has no champion of '{self.model_name}'", current)
            if current is not None and current.version == version:
                same = current if current.origin == FROM_REGISTRY else replace(current, origin=FROM_REGISTRY)
                return ServingState(READY, None, same)
            model = self.source.load(version)
        except (BundleError, signing.SigningError) as exc:
            return self._fallback(str(exc), current)
        except RegistryError as exc:
            # The detail (it may name the server) goes to the log, not to the unauthenticated /ready.
            log.warning("the model registry failed: %s", exc)
            return self._fallback("the model registry is unreachable", current)
        loaded = self._prepare(model, version, FROM_REGISTRY)
        self._save_cache(model)
        return ServingState(READY, None, loaded)

    def _fallback(self, problem: str, current: LoadedModel | None) -> ServingState:
        """Keep serving what is loaded, else the cached champion, else nothing."""
        if current is not None:
            serving = f"still serving version {current.version} (loaded from the {current.origin})"
            return ServingState(DEGRADED, f"{problem}; {serving}", current)
        cached = self._load_cache()
        if cached is None:
            return ServingState(UNAVAILABLE, f"{problem}; no cached champion that verifies", None)
        loaded = self._prepare(cached, str(cached.info.get("version", "unknown")), FROM_CACHE)
        return ServingState(DEGRADED, f"{problem}; serving the cached version {loaded.version}", loaded)

    def _prepare(self, model: ServedModel, version: str, origin: str) -> LoadedModel:
        """Build the scorer (ONNX session) and the request schema now, off the request path."""
        facts = model.verification
        scoring = ScoringPath(
            model.scorer.path,
            f"{facts['reason']} at registration",
            facts.get("max_abs_diff"),
            facts.get("rows", 0),
        )
        _ = model.spec.record_model
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return LoadedModel(self.model_name, str(version), model, model.scorer, scoring, origin, now)

    def _load_cache(self) -> ServedModel | None:
        try:
            key = signing.load_key(self.settings)
        except signing.SigningError as exc:
            # Asked again at every poll while the registry has no champion: say it once.
            if str(exc) != self._cache_refusal:
                log.warning("%s: not reading the cached champion: %s", self.model_name, exc)
                self._cache_refusal = str(exc)
            return None
        self._cache_refusal = None
        cached = cache.load(self.cache_dir, key, self.model_name)
        if cached is not None and cached.pipeline_loader is None:
            # Without it, a worker that started from the cache could never explain, even once
            # the registry had confirmed the version (confirming does not load it again).
            cached.pipeline_loader = self.source.pipeline_loader(cached)
        return cached

    def _save_cache(self, model: ServedModel) -> None:
        try:
            cache.save(self.cache_dir, model)
        except OSError as exc:
            log.warning("cannot cache the champion in %s: %s", self.cache_dir, exc)
