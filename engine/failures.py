"""One bad event affects only itself: what each per-event loop does with an error raised for one event.

Intake (the collector in either intake mode, ``eventmap enqueue``, the inbox processor, the source
worker's mapped events), the delivery worker (rendering, steps) and the source worker (lookups,
mapping) each run one event at a time inside a ``try``; whatever that event raises becomes an
``EventFailed`` here, and the loop records it as that event's own verdict (rejected, or dead for
a vendor's answer), with the reason and the problem. The rest of its batch, turn and lease go on.

``EventFailed`` is also raised on purpose where the cause is known (a route's condition that cannot
be evaluated on this event); anything else is a fault nobody planned for, so it is logged too, at
most once a minute per place and kind, however many events hit it.
"""
from __future__ import annotations

import logging
import threading
import time

from .problems import EventmapError, Problem
from .secrets import Masker

log = logging.getLogger("eventmap")
LOG_EVERY = 60.0   # seconds between two log lines about the same unexpected failure


class EventFailed(EventmapError):
    """This one event cannot be processed: ``reason`` for its verdict, ``problem`` naming where and why."""

    def __init__(self, reason: str, problem: Problem):
        super().__init__(f"{reason}: {problem}")
        self.reason, self.problem = reason, problem


class _Throttle:
    """Which (place, kind) was logged when, so a flood of one failure makes one line a minute."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def due(self, key: tuple[str, str]) -> bool:
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, -LOG_EVERY) < LOG_EVERY:
                return False
            self._last[key] = now
            return True


_THROTTLE = _Throttle()


def event_failed(exc: Exception, doing: str, masker: Masker | None = None) -> EventFailed:
    """``exc``, raised for one event while ``doing`` (``"the mapping"``, ``"intake"``), as that event's
    failure: itself when it is an EventFailed, else one that names the error (secrets masked), logged."""
    if isinstance(exc, EventFailed):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if masker is not None:
        text = masker.text(text)
    if _THROTTLE.due((doing, type(exc).__name__)):
        log.warning("%s failed on one event, which alone is rejected: %s (the rest go on; at most one line a "
                    "minute says so)", doing, text, extra={"event": "event_failed", "reason": text})
    return EventFailed(f"{doing} failed on this event", Problem("", f"{doing} failed: {text}"))
