"""PostgreSQL's wake-ups: ``LISTEN`` on a connection of its own, in a thread, reconnecting when it is lost.

Writers ``NOTIFY`` inside the transaction that leaves the work (``PostgresStore._notify``),
so a listener hears of it once it is committed, and from any host. A ``LISTEN``
belongs to a session, so it cannot live in the pool (a pooled connection serves
whichever thread asks next, and is reset or replaced at will): each listening
process holds one connection more than its ``pool_size``. When that connection
is lost (the server restarted, the network failed: TCP keepalives notice a silent
peer within about a minute) the listener says so once, reconnects with a growing
wait, and then wakes every queue, since what was written meanwhile went unheard;
until then the workers poll as before.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from psycopg import sql

from ..secrets import Masker
from .wake import Hear, heard

log = logging.getLogger("eventmap.store")

LISTEN_WAIT = 0.5        # seconds between looks at the stop flag while no notification comes (no query is sent)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class PgListener:
    def __init__(self, params: dict[str, Any], channel: str, hear: Hear, masker: Masker, where: str):
        self.params = {**KEEPALIVES, **params, "autocommit": True}
        self.channel, self.hear, self.masker, self.where = channel, hear, masker, where
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-listen", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<PgListener {self.where} {self.channel}>"

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(**self.params) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if failures:
                        log.warning("listening for wake-ups from %s again", self.where)
                    failures = 0
                    self.hear(None)   # anything written before LISTEN took effect went unheard
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001  whatever ends the connection, the listener tries again
                failures += 1
                wait = min(30, 2 ** failures)
                if failures == 1:
                    log.warning("lost the wake-up connection to %s (%s); delivery polls until it is back, trying "
                                "again in %ds", self.where, self.masker.text(str(exc).strip()), wait)
                self._stop.wait(wait)

    def _listen(self, conn: psycopg.Connection) -> None:
        while not self._stop.is_set():
            for note in conn.notifies(timeout=LISTEN_WAIT):
                try:
                    self.hear(heard(note.payload))
                except Exception:   # the listener must outlive one bad wake-up
                    log.exception("a wake-up could not be handed on")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(LISTEN_WAIT + 5)
