"""What one worker holds: settings, a champion per model and one watcher, the log writer, users and metrics.

Every model with a spec in `CLINRISK_SPEC_DIR` is served, each by its own `ChampionHolder`, so
each swaps champions on its own and a model without one answers 503 on its own routes only.
The default model (`CLINRISK_MODEL_NAME`) is the one `/predict`, `/feedback`, `/model` and the
patient page at `/` serve, and the one `/ready`'s status follows.

Threads start on the first request or from gunicorn's post_worker_init hook, always in the
worker process itself (never in the gunicorn master), and stop in `close()`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clinrisk.errors import SpecError
from clinrisk.serving.champion import ChampionHolder, LoadedModel, ModelSource, RegistrySource, ServingState
from clinrisk.serving.logwriter import PredictionLogWriter
from clinrisk.serving.watcher import ChampionWatcher
from clinrisk.settings import MODEL_NAME, Settings
from clinrisk.spec import ModelSpec, load_spec
from clinrisk.web.errors import ApiError
from clinrisk.web.metrics import Metrics
from clinrisk.web.ratelimit import FailureLimiter
from clinrisk.web.users import UserError, UserStore

log = logging.getLogger(__name__)

# How long a stopping worker waits for a registry poll in flight. The poller only reads, and
# the serving cache is written atomically, so a poll cut short leaves nothing half-written.
# On a loaded machine one poll of every model took over 10 s, and waiting for it outlasted
# `docker stop`'s grace period.
POLLER_STOP_SECONDS = 1.0


# Python hands the GIL from a busy thread to a waiting one only every switch interval (5 ms by
# default). A request thread that releases it (a socket read, the scorer's native call) then
# waits behind the log writer or the watcher for up to 5 ms each time: most of a request's
# latency under load. Workers use a 0.5 ms interval (set by gunicorn_conf.post_worker_init).
WORKER_SWITCH_INTERVAL = 0.0005


@dataclass(frozen=True)
class ModelSlot:
    """One served model: its spec file's contents and the holder of its current champion."""

    name: str
    spec: ModelSpec
    holder: ChampionHolder


Sources = ModelSource | Mapping[str, ModelSource] | None


def spec_names(settings: Settings) -> list[str]:
    """The models with a spec file in the spec directory: the default first, then by name."""
    found = {p.stem for p in Path(settings.spec_dir).glob("*.yaml") if MODEL_NAME.fullmatch(p.stem)}
    return [settings.model_name, *sorted(found - {settings.model_name})]


class Runtime:
    """The shared state of the app, kept in `app.extensions["clinrisk"]`.

    `source` is where champions come from: None reads the MLflow registry for every model with
    a spec; one `ModelSource` (unit tests) serves only the default model from it; a mapping
    serves the models it names, each from its own source.
    """

    def __init__(self, settings: Settings, source: Sources = None, *, watch: bool = True):
        self.settings = settings
        self.default_name = settings.model_name
        self.refused: dict[str, str] = {}  # model name -> why its spec file cannot be served
        self.models: dict[str, ModelSlot] = self._slots(self._sources(source))
        self.watcher = (
            ChampionWatcher([s.holder for s in self.models.values()], settings.poll_interval_seconds)
            if watch
            else None
        )
        self.writer = PredictionLogWriter(settings.prediction_log_url, journal_dir=settings.journal_dir)
        self.users = UserStore(settings.users_file)
        self.limiter = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_seconds)
        self.metrics = Metrics()
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _sources(self, source: Sources) -> dict[str, ModelSource]:
        if source is None:
            return {name: RegistrySource(self.settings, name) for name in spec_names(self.settings)}
        if isinstance(source, Mapping):
            if self.default_name not in source:
                raise ValueError(f"no model source for the default model {self.default_name!r}")
            others = sorted(set(source) - {self.default_name})
            return {name: source[name] for name in [self.default_name, *others] if name in source}
        return {self.default_name: source}

    def _slots(self, sources: dict[str, ModelSource]) -> dict[str, ModelSlot]:
        """A slot per model whose spec loads; a broken spec fails start-up only for the default model."""
        slots = {}
        for name, source in sources.items():
            try:
                spec = load_spec(self.settings.spec_path_for(name))
            except SpecError as exc:
                if name == self.default_name:
                    raise
                log.error("not serving %s: %s", name, exc)
                self.refused[name] = "its spec file is invalid (the server log says why)"
                continue
            slots[name] = ModelSlot(name, spec, ChampionHolder(self.settings, source, name))
        return slots

    @property
    def holder(self) -> ChampionHolder:
        """The default model's holder."""
        return self.models[self.default_name].holder

    @property
    def spec(self) -> ModelSpec:
        """The default model's spec file."""
        return self.models[self.default_name].spec

    def ensure_started(self) -> None:
        """Load the champions and start the threads, once per process.

        With a watcher, each champion in the local cache is served at once; the default model
        without a cached champion is loaded from the registry before the first answer (as with
        one model), the other models' by the watcher's first pass, right after and off the
        start-up path, so a worker is ready in about a second whatever the number of models.
        Without a watcher every model is loaded from the registry first.
        """
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self.writer.start()
            self._warn_without_users()
            log.info("serving %s (default: %s)", ", ".join(self.models), self.default_name)
            self._load_champions()
            atexit.register(self.close)
            self._pid = os.getpid()

    def _load_champions(self) -> None:
        if self.watcher is None:
            for slot in self.models.values():
                slot.holder.refresh()
            return
        cached = {name: slot.holder.start_from_cache() for name, slot in self.models.items()}
        if not cached[self.default_name]:
            self.holder.refresh()
        others = len(self.models) > 1
        self.watcher.start(check_now=cached[self.default_name] or others)

    def _warn_without_users(self) -> None:
        try:
            if self.settings.auth_enabled and self.users.empty:
                log.warning(
                    "auth is on but %s has no users: add one with `clinrisk user add NAME`", self.users.path
                )
        except UserError as exc:
            log.error("%s", exc)

    def close(self) -> None:
        """Stop polling and write every queued prediction (graceful shutdown)."""
        if self._pid != os.getpid():
            return
        started = time.monotonic()
        self.writer.close()
        flushed = time.monotonic()
        if self.watcher is not None:
            self.watcher.stop(timeout=POLLER_STOP_SECONDS)
        log.info(
            "stopped: prediction log flushed in %.1f s, registry polling stopped in %.1f s",
            flushed - started,
            time.monotonic() - flushed,
        )
        self._pid = None

    def slot(self, name: str | None = None) -> ModelSlot:
        """A served model by name (the default when None); 404 naming the served models otherwise.

        The name is only ever looked up among the loaded specs, never used as a path.
        """
        name = self.default_name if name is None else name
        found = self.models.get(name)
        if found is not None:
            return found
        if name in self.refused:
            raise ApiError(503, "model_unavailable", f"model '{name}' is not served: {self.refused[name]}")
        served = ", ".join(self.models)
        shown = name if len(name) <= 64 else name[:64] + "…"
        raise ApiError(404, "unknown_model", f"unknown model '{shown}': this service serves {served}")

    def serving(self, name: str | None = None) -> tuple[ServingState, LoadedModel]:
        """The model's current state and its champion, or a 503 naming why nothing can be served."""
        slot = self.slot(name)
        state = slot.holder.state
        if state.loaded is None:
            retry = str(max(1, round(self.settings.poll_interval_seconds)))
            message = f"no champion model is loaded for {slot.name}: {state.reason}"
            raise ApiError(503, "no_model", message, headers=[("Retry-After", retry)])
        return state, state.loaded

    def current_spec(self, name: str | None = None) -> ModelSpec:
        """The served champion's spec, else the spec file's (for the OpenAPI document)."""
        slot = self.slot(name)
        loaded = slot.holder.state.loaded
        return loaded.model.spec if loaded is not None else slot.spec

    def overview(self) -> list[dict]:
        """Each model's name, kind, state, version and threshold (GET /models, /ready)."""
        listed = [self._describe(slot) for slot in self.models.values()]
        listed += [
            {"name": name, "kind": None, "status": "unavailable", "reason": reason}
            | dict.fromkeys(("version", "threshold", "loaded_from"))
            for name, reason in self.refused.items()
        ]
        return listed

    def _describe(self, slot: ModelSlot) -> dict:
        state = slot.holder.state
        loaded = state.loaded
        spec = loaded.model.spec if loaded is not None else slot.spec
        return {
            "name": slot.name,
            "kind": spec.objective.kind,
            "status": state.status,
            "reason": state.reason,
            "version": loaded.version if loaded is not None else None,
            "threshold": loaded.model.threshold if loaded is not None else None,
            "loaded_from": loaded.origin if loaded is not None else None,
        }
