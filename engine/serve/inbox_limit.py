"""The bound on the queue-mode inbox: past it, intake answers 429 with Retry-After instead of storing more.

With ``server.intake: queue`` the collector answers as soon as a request is on disk, so it can accept
far faster than the inbox processor turns requests into events (736,000 events in 10 s, the store
growing 7 MB/s). The inbox is a buffer for bursts, not a place to pile up a backlog: when it holds
``server.inbox_max_requests`` requests or ``server.inbox_max_mb`` megabytes, a new request is refused
with 429 and Retry-After (the SDKs keep their events and send them again), counted in /metrics as
``eventmap_inbox_full_total``, until the processor has caught up.

Counting the inbox is one scan of its rows (45 ms at 100,000 requests on SQLite), too slow for every
request and, on the event loop, in the way of every other. So each server process reads the size in
a thread of its own every ``READ_EVERY`` seconds and adds what it kept itself since: another process's
burst is seen within a second, this process's at once.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref

log = logging.getLogger("eventmap.serve")
READ_EVERY = 1.0   # seconds between two reads of the inbox's size
MB = 1 << 20


class InboxLimit:
    """Whether the inbox has room for one more request, per server process; thread-safe."""

    def __init__(self, read, max_requests: int, max_bytes: int, every: float = READ_EVERY):
        """``read() -> (requests, bytes)`` is ``Store.inbox_size``; it is called once now and then in a thread."""
        self.read, self.max_requests, self.max_bytes, self.every = read, max_requests, max_bytes, every
        self._lock = threading.Lock()
        self._read = read()                 # (requests, bytes) at the last read
        self._added = (0, 0)                # kept by this process since that read began
        threading.Thread(target=_reread, args=(weakref.ref(self),), name="inbox-size", daemon=True).start()

    def __repr__(self) -> str:
        return f"<InboxLimit {self.max_requests} requests, {self.max_bytes // MB} MB>"

    def admit(self, size: int) -> bool:
        """True, counting it, when a request of ``size`` bytes fits; False when the inbox is full."""
        with self._lock:
            requests = self._read[0] + self._added[0] + 1
            total = self._read[1] + self._added[1] + size
            if requests > self.max_requests or total > self.max_bytes:
                return False
            self._added = (self._added[0] + 1, self._added[1] + size)
            return True

    def size(self) -> tuple[int, int]:
        """(requests, bytes) as this process last knew them, with its own since."""
        with self._lock:
            return self._read[0] + self._added[0], self._read[1] + self._added[1]

    def reread(self) -> None:
        with self._lock:
            before = self._added
        try:
            found = self.read()
        except Exception as exc:  # noqa: BLE001  the next read tries again; the last size stands meanwhile
            log.warning("cannot read the inbox's size: %s: %s", type(exc).__name__, exc)
            return
        with self._lock:   # what was kept during the read may or may not be in it: counted, to be safe
            self._read, self._added = found, (self._added[0] - before[0], self._added[1] - before[1])


def _reread(ref: weakref.ref) -> None:
    """Read the size every ``every`` seconds for as long as the InboxLimit is in use (its collector alive)."""
    while True:
        limit = ref()
        if limit is None:
            return
        every = limit.every
        del limit   # not held while sleeping: a collector that is gone takes this thread with it
        time.sleep(every)
        limit = ref()
        if limit is None:
            return
        limit.reread()
        del limit
