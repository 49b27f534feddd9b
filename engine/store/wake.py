"""Wake-ups: a write that leaves work for a queue tells the processes that deliver it, so they need not poll.

A store write that makes deliveries due (intake, the inbox, ``deliveries retry``)
names the queues it filled: destination names, a webhook source's pseudo-destination
(``source:NAME``), or ``INBOX`` for requests kept whole. Each backend carries the
names to every listening process: PostgreSQL with ``NOTIFY`` (``pg_listen.py``),
SQLite through a FIFO per listener in a folder beside the file (``fifo.py``).
A listener hands them to ``hear(names)``; ``None`` means "any queue" (too many
names to carry, or a listener that may have missed some). Wake-ups only hurry the
workers: a lost one costs the poll interval, never an event.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ..secrets import Masker

log = logging.getLogger("eventmap.store")

INBOX = "(inbox)"   # the inbox processor's queue (server.intake: queue); not a destination
ALL = "*"           # every queue: sent in place of a list too long to carry
MOST_BYTES = 4000   # a wake-up's size at most: under a pipe's atomic write (4096) and NOTIFY's payload (8000)
LEAST_GAP = 0.005   # seconds between two wake-ups a process sends: under load they carry many writes each

Hear = Callable[[frozenset[str] | None], None]   # names of the queues with new work; None: any of them


def wake_text(names: Iterable[str]) -> str:
    """The wake-up for ``names``: one name a line; ``ALL`` when a name holds a line break or the list is too long."""
    unique = sorted(set(names))
    text = "".join(f"{name}\n" for name in unique)
    if len(text.encode()) > MOST_BYTES or any("\n" in name for name in unique):
        return f"{ALL}\n"
    return text


def heard(text: str) -> frozenset[str] | None:
    """The queue names in wake-ups (one or several, run together); None for ``ALL``."""
    names = frozenset(line for line in text.split("\n") if line)
    return None if ALL in names else names


class Notifier:
    """Sends a store's wake-ups from a thread of its own, so that no write waits for one: a write hands its
    names over (``add``) and returns; names that gather while one wake-up is being sent, or within
    ``LEAST_GAP`` of the last, go in the next one together. So a lone write wakes the workers at once, and a
    stream of writes costs the listeners (and PostgreSQL, where each wake-up is a transaction) at most one
    wake-up per 5 ms per process, not one per write. ``send(names)`` is the backend's way of telling them."""

    def __init__(self, send: Callable[[set[str]], None], masker: Masker | None = None):
        self._send, self._masker = send, masker or Masker(frozenset())
        self._changed = threading.Condition()
        self._waiting: set[str] = set()
        self._sender: threading.Thread | None = None
        self._closing = False
        self._next_at = 0.0   # time.monotonic() before which nothing more is sent

    def __repr__(self) -> str:
        return f"<Notifier waiting={sorted(self._waiting)}>"

    def add(self, names: set[str]) -> None:
        with self._changed:
            self._waiting |= names
            if self._sender is None or not self._sender.is_alive():   # first use in this process (or after a fork)
                self._sender = threading.Thread(target=self._send_waiting, name="store-wake", daemon=True)
                self._sender.start()
            self._changed.notify()

    def close(self) -> None:
        """Send what is waiting, then stop the thread (a later ``add`` starts another): a command that exits
        right after its writes still wakes the workers."""
        with self._changed:
            sender, self._closing = self._sender, True
            self._changed.notify()
        if sender is not None and sender is not threading.current_thread():
            sender.join(10)
        with self._changed:
            self._closing = False
            if self._sender is sender:
                self._sender = None

    def _send_waiting(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closing:
                    self._changed.wait()
                if not self._waiting:
                    return
            time.sleep(max(0.0, self._next_at - time.monotonic()))   # names keep gathering meanwhile
            with self._changed:
                names, self._waiting = self._waiting, set()
            self._next_at = time.monotonic() + LEAST_GAP
            try:
                self._send(names)
            except Exception as exc:  # noqa: BLE001  a wake-up only hurries: the workers find the work when they poll
                log.warning("could not wake the delivery workers (%s); they find the work within the poll interval",
                            self._masker.text(f"{type(exc).__name__}: {exc}"))


class Silent:
    """What a store without wake-ups listens with: nothing is ever heard, workers poll."""

    def close(self) -> None:
        pass
