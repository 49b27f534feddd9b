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

from collections.abc import Callable, Iterable

INBOX = "(inbox)"   # the inbox processor's queue (server.intake: queue); not a destination
ALL = "*"           # every queue: sent in place of a list too long to carry
MOST_BYTES = 4000   # a wake-up's size at most: under a pipe's atomic write (4096) and NOTIFY's payload (8000)

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


class Silent:
    """What a store without wake-ups listens with: nothing is ever heard, workers poll."""

    def close(self) -> None:
        pass
