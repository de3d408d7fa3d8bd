"""Failed-authentication limits per client and per user, checked before any password hashing.

After `limit` failures within `window` seconds, a client address or a user name is refused
with 429 and `Retry-After` until its oldest failure leaves the window. The check costs a
dictionary look-up, so a flood of wrong passwords no longer buys scrypt time from the
workers, and real users (whose verified password is remembered) keep being served.
Counts live in each worker process (OWASP ASVS 4.0, 2.2.1: anti-automation).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_TRACKED = 10_000


class FailureLimiter:
    """A sliding window of failure times for each key (e.g. 'client:10.0.0.1', 'user:alice')."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until every key may try again, or None when none is over the limit."""
        now = self._clock()
        waits = []
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is not None and len(times) >= self.limit:
                    waits.append(times[0] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=self.limit)
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
