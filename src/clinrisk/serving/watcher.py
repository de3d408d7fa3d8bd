"""A daemon thread per worker that polls the registry and lets each model's holder swap champions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from clinrisk.serving.champion import ChampionHolder

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Call `refresh()` on every holder, in order, every `interval` seconds until stopped.

    One thread for all the models a worker serves: a refresh is one alias lookup when nothing
    changed, and `refresh()` never raises, so one model's broken version or registry error
    neither stops the thread nor the other models' swaps.
    """

    def __init__(self, holders: ChampionHolder | Sequence[ChampionHolder], interval: float):
        self.holders = [holders] if isinstance(holders, ChampionHolder) else list(holders)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> ChampionHolder:
        """The first (default) model's holder."""
        return self.holders[0]

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

    def refresh_all(self) -> None:
        for holder in self.holders:
            if self._stop.is_set():
                return
            holder.refresh()

    def _run(self, check_now: bool = False) -> None:
        if check_now:
            self.refresh_all()
        while not self._stop.wait(self.interval):
            self.refresh_all()
