"""What one worker holds: settings, the champion and its watcher, the log writer, users and metrics.

Threads start on the first request or from gunicorn's post_worker_init hook, always in the
worker process itself (never in the gunicorn master), and stop in `close()`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from clinrisk.serving.champion import ChampionHolder, LoadedModel, ModelSource, RegistrySource, ServingState
from clinrisk.serving.logwriter import PredictionLogWriter
from clinrisk.serving.watcher import ChampionWatcher
from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec, load_spec
from clinrisk.web.errors import ApiError
from clinrisk.web.metrics import Metrics
from clinrisk.web.ratelimit import FailureLimiter
from clinrisk.web.users import UserError, UserStore

log = logging.getLogger(__name__)


# Python hands the GIL from a busy thread to a waiting one only every switch interval (5 ms by
# default). A request thread that releases it (a socket read, the scorer's native call) then
# waits behind the log writer or the watcher for up to 5 ms each time: most of a request's
# latency under load. Workers use a 0.5 ms interval (set by gunicorn_conf.post_worker_init).
WORKER_SWITCH_INTERVAL = 0.0005


class Runtime:
    """The shared state of the app, kept in `app.extensions["clinrisk"]`."""

    def __init__(self, settings: Settings, source: ModelSource | None = None, *, watch: bool = True):
        self.settings = settings
        self.spec: ModelSpec = load_spec(settings.spec_path)
        self.holder = ChampionHolder(settings, source or RegistrySource(settings, settings.model_name))
        self.watcher = ChampionWatcher(self.holder, settings.poll_interval_seconds) if watch else None
        self.writer = PredictionLogWriter(settings.prediction_log_url, journal_dir=settings.journal_dir)
        self.users = UserStore(settings.users_file)
        self.limiter = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_seconds)
        self.metrics = Metrics()
        self._pid: int | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Load the champion and start the threads, once per process.

        With a watcher, a champion in the local cache is served at once and the registry is
        asked right after, off the start-up path (a worker is ready in about a second, not
        after importing MLflow and downloading); otherwise the registry is asked first.
        """
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self.writer.start()
            self._warn_without_users()
            from_cache = self.watcher is not None and self.holder.start_from_cache()
            if not from_cache:
                self.holder.refresh()
            if self.watcher is not None:
                self.watcher.start(check_now=from_cache)
            atexit.register(self.close)
            self._pid = os.getpid()

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
        self.writer.close()
        if self.watcher is not None:
            self.watcher.stop()
        self._pid = None

    def serving(self) -> tuple[ServingState, LoadedModel]:
        """The current state and its model, or a 503 naming why nothing can be served."""
        state = self.holder.state
        if state.loaded is None:
            retry = str(max(1, round(self.settings.poll_interval_seconds)))
            message = f"no champion model is loaded: {state.reason}"
            raise ApiError(503, "no_model", message, headers=[("Retry-After", retry)])
        return state, state.loaded

    def current_spec(self) -> ModelSpec:
        """The served model's spec, else the spec file's (for the OpenAPI document)."""
        loaded = self.holder.state.loaded
        return loaded.model.spec if loaded is not None else self.spec
