"""A daemon thread per worker that polls the registry and lets the holder swap champions."""

from __future__ import annotations

import logging
import threading

from clinrisk.serving.champion import ChampionHolder

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Call `holder.refresh()` every `interval` seconds until stopped."""

    def __init__(self, holder: ChampionHolder, interval: float):
        self.holder = holder
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, *, check_now: bool = False) -> None:
        """Poll every `interval` seconds; with `check_now`, refresh once at once (off the caller's thread)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(check_now,), name="champion-watcher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, check_now: bool = False) -> None:
        if check_now:
            self.holder.refresh()
        while not self._stop.wait(self.interval):
            self.holder.refresh()
