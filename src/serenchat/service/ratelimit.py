"""Token buckets, one per key, with bounded memory."""

from __future__ import annotations

import time


class RateLimiter:
    """Allow ``rate`` events a second per key, in bursts of up to ``burst``.

    A rate of 0 disables the limit. At most ``max_keys`` buckets are kept;
    full buckets are the first to be forgotten, since forgetting one changes
    nothing.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._max_keys = max_keys
        self._buckets: dict[object, tuple[float, float]] = {}

    def allow(self, key: object) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1, now)
        return True

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {
            key: value
            for key, value in self._buckets.items()
            if now - value[1] < refill
        }
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
