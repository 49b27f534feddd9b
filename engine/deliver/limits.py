"""Keep to a vendor's request rate across every thread sending to it."""
from __future__ import annotations

import threading
import time


class RateLimiter:
    """A token bucket: ``rate`` requests a second on average, bursts of up to ``burst``.

    The default burst is one second's worth (at least one), so a quota such as
    5,000 a day is spread out instead of spent at start-up.
    """

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic, sleep=time.sleep):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock, self.sleep = clock, sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a token; False when ``stop`` was set while waiting."""
        while True:
            with self._lock:
                now = self.clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
            if stop is not None:
                if stop.wait(min(wait, 1.0)):
                    return False
            else:
                self.sleep(wait)
