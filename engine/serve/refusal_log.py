"""Requests the collector refused at the door, handed to the store's sample for the console (store/refusals.py).

Refusing a request must stay cheap: a flood of wrong keys must not become a flood of
writes, and a refusal decided on the event loop (a busy store's 429) must not wait for
the disk. So ``RefusalLog.add`` only counts the refusal in this process's memory, alike
ones together, and a thread of the process writes what was counted at most once every
``FLUSH_EVERY`` seconds, in one transaction. The store's table is what every server
process (gunicorn's workers) and ``eventmap console`` share. Refusals counted in the last
second before a process stops are not written: this is a sample, and /metrics counts
every refusal.

Refusals decided before a request reaches the collector (too many connections, a
malformed request line, headers too slow) are counted in /metrics only.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from ..secrets import masked_path
from ..store import Refusal
from ..store.refusals import key_prefix
from .segment_api import ApiError, basic_credentials

log = logging.getLogger("eventmap.serve")

FLUSH_EVERY = 1.0     # seconds between a process's writes of what it counted
MOST_KINDS = 100      # kinds of refusal kept apart per write; past it they are counted per status
WARN_EVERY = 60.0     # seconds between log lines when the sample cannot be written
BODY_KEY = "eventmap.body_write_key"   # an environ key: the write key a request's body carried (browser SDKs)


class RefusalLog:
    """This process's refusals since its last write, and the thread that writes them (started on first use
    in each process: threads do not survive gunicorn's fork)."""

    def __init__(self, store: Callable, config, clock=time.time):
        self._store, self.config, self.clock = store, config, clock   # store(): the process's own store
        self._lock = threading.Lock()
        self._pending: dict[tuple, Refusal] = {}
        self._wake = threading.Event()
        self._pid: int | None = None
        self._warned = 0.0

    def __repr__(self) -> str:
        return f"<RefusalLog {len(self._pending)} pending>"

    def note(self, environ, error: ApiError) -> None:
        """Count the request ``environ`` refused with ``error``; no I/O. Never raises: keeping the sample must
        not change the answer."""
        try:
            self.add(refusal_of(environ, error, self.config, self.clock()))
        except Exception:
            log.exception("a refused request could not be counted for the console")

    def add(self, refusal: Refusal) -> None:
        """Count one refusal, with the alike ones since the last write."""
        with self._lock:
            if self._pid != os.getpid():   # a new process: its own thread, nothing inherited
                self._pid, self._pending, self._wake = os.getpid(), {}, threading.Event()
                threading.Thread(target=self._run, args=(self._wake,), name="refusals", daemon=True).start()
            if refusal.group() not in self._pending and len(self._pending) >= MOST_KINDS:
                refusal = Refusal(refusal.status, "(many)", "more kinds of refused request in one second than "
                                  "the sample keeps apart", "", first_at=refusal.first_at, last_at=refusal.last_at)
            kept = self._pending.setdefault(refusal.group(), refusal)
            if kept is not refusal:
                kept.count += refusal.count
                kept.last_at, kept.reason = refusal.last_at, refusal.reason
            self._wake.set()

    def _run(self, wake: threading.Event) -> None:
        while True:
            wake.wait()
            time.sleep(FLUSH_EVERY)   # what comes meanwhile goes in the same write
            with self._lock:
                pending, self._pending = list(self._pending.values()), {}
                wake.clear()
            try:
                self._store().refused(pending)
            except Exception as exc:  # noqa: BLE001  the store is failing: intake says so loudly; this is a sample
                now = time.monotonic()
                if now - self._warned > WARN_EVERY:
                    self._warned = now
                    log.warning("%d refused requests could not be kept for the console: %s", len(pending),
                                type(exc).__name__)


def refusal_of(environ, error: ApiError, config, now: float) -> Refusal:
    """What the console shows of one refused request: never its write key, only which source the key is
    (when it is right) or its first characters (when no source has it)."""
    path = environ.get("PATH_INFO", "") or "/"
    shown = masked_path(path)
    # the key: HTTP Basic's user, the body's writeKey, or the part of the path masked_path hides
    key = (basic_credentials(environ.get("HTTP_AUTHORIZATION")) or ("", ""))[0] or environ.get(BODY_KEY) or \
        next((given for given, masked in zip(path.split("/"), shown.split("/")) if given != masked), None)
    source = config.write_keys.source_for(key) if key and config.write_keys else None
    if source is None and path.startswith("/sources/"):
        source = path.split("/")[2] or None   # a webhook: its name is in the path
    return Refusal(error.status, error.code, error.message, shown, source,
                   None if source is not None else key_prefix(key),
                   environ.get("HTTP_ORIGIN"), config.browser.client_ip(environ), environ.get("HTTP_USER_AGENT"),
                   first_at=now, last_at=now)
