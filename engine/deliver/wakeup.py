"""Doorbells: how a worker's idle threads wait for work, woken by the store's wake-ups instead of polling.

Each worker (a destination, a webhook source, the inbox) has one doorbell for
all its threads. The store's listener rings it when another process (or this
one) commits work for that queue (``store.listen``), and a thread that found a
full turn rings it so a sibling takes the rest. Of a worker's idle threads only
one keeps time: it looks at the store when the poll interval has passed or the
next retry is due, whichever is first, and hands that duty to another idle thread
when it leaves to work; the others wait for a ring. So an idle destination costs
the store one look per poll interval, however many threads it has, and a lost
wake-up costs at most one poll interval. A ring that finds no thread waiting is
kept for the next one that would wait, so work committed while every thread was
busy is not left for the poll.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


class Doorbell:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._rung = False        # a ring no thread has answered yet
        self._timing = False      # an idle thread keeps time (polls)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Doorbell rung={self._rung} timing={self._timing} closed={self._closed}>"

    def ring(self) -> None:
        """Wake one idle thread, or the next one that would wait."""
        with self._changed:
            self._rung = True
            self._changed.notify()

    def close(self) -> None:
        """Wake every thread, now and from now on: the runner is stopping."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait(self, poll: Callable[[], float]) -> None:
        """Return when rung, or, for the one idle thread that keeps time, after ``poll()`` seconds (``poll`` may
        ask the store when the next retry is due; it is called outside the lock, and only by that thread)."""
        with self._changed:
            while not (self._rung or self._closed) and self._timing:
                self._changed.wait()   # another thread keeps time: a ring, or that thread leaving, wakes this one
            if self._answer():
                return
            self._timing = True
        try:
            timeout = poll()
            with self._changed:
                if not (self._rung or self._closed):
                    self._changed.wait(timeout)
                self._answer()
        finally:
            with self._changed:
                self._timing = False
                self._changed.notify()   # an idle thread takes over keeping time

    def _answer(self) -> bool:
        """Take the ring, if there is one (the lock is held); True when the caller should go and work."""
        rung, self._rung = self._rung, False
        return rung or self._closed


class Doorbells:
    """A doorbell per worker name, rung by the names a wake-up carries (None: every one)."""

    def __init__(self, names: Iterable[str]):
        self.bells = {name: Doorbell() for name in names}

    def __getitem__(self, name: str) -> Doorbell:
        return self.bells[name]

    def hear(self, names: frozenset[str] | None) -> None:
        for name in self.bells if names is None else names:
            bell = self.bells.get(name)
            if bell is not None:
                bell.ring()

    def close(self) -> None:
        for bell in self.bells.values():
            bell.close()
