"""Per-client failed-authentication throttle: too many wrong keys -> 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_CLIENTS = 10_000  # the oldest client's record is dropped beyond this (bounded memory)


class FailedAuthThrottle:
    """At most ``limit`` failed attempts per client in ``window_s``, then wait (0 = off)."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._fails.get(client)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[client]
        return q

    def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait before trying again, or None if it may try now."""
        if self.limit <= 0:
            return None
        with self._lock:
            now = self.clock()
            q = self._recent(client, now)
            if len(q) < self.limit:
                return None
            return max(1, math.ceil(q[0] + self.window_s - now))

    def fail(self, client: str) -> None:
        """Record one failed attempt by ``client``."""
        if self.limit <= 0:
            return
        with self._lock:
            now = self.clock()
            q = self._recent(client, now)
            if client not in self._fails:
                if len(self._fails) >= MAX_CLIENTS:
                    del self._fails[next(iter(self._fails))]
                self._fails[client] = q
            q.append(now)
            while len(q) > self.limit:
                q.popleft()
