"""A deadline for a whole request: connecting, sending, the answer's headers and its body, together.

requests' ``timeout`` bounds each read from the socket, not the request: a vendor that trickles a
byte every few seconds, in its headers or its body, keeps a delivery thread as long as it likes (one
held a thread 42 s, past a 15 s lease). So every socket a request opens or reuses is registered with
the deadline of the request running in that thread (``watch``), and one thread per process shuts
down the sockets of requests past their deadline: the read waiting on them ends at once, and the
client reports the request as unanswered (``expired``).

The sockets are found through the connection classes of the adapter below (``WatchedAdapter``), which
``HttpClient`` mounts on its session; nothing else changes in how requests sends.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watch:
    """One request's deadline and the sockets it used; ``expired`` once they were cut."""

    __slots__ = ("deadline", "expired", "sockets")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sockets: list[socket.socket] = []
        self.expired = False


class Deadlines:
    """Cuts the sockets of requests past their deadline; one thread per process, started on first use."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._watches: set[Watch] = set()
        self._current = threading.local()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, seconds: float) -> Iterator[Watch]:
        """The request made in this block, in this thread, ends within ``seconds``."""
        entry = Watch(self.clock() + seconds)
        self._current.watch = entry
        with self._changed:
            self._watches.add(entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield entry
        finally:
            self._current.watch = None
            with self._changed:   # after this the thread cannot cut a socket that went back to the pool
                self._watches.discard(entry)

    def opened(self, sock: socket.socket | None) -> None:
        """A socket the request in this thread is about to use (a new one, or one from the pool)."""
        entry = getattr(self._current, "watch", None)
        if entry is None or sock is None:
            return
        with self._changed:
            entry.sockets.append(sock)
            if entry.expired:
                _cut(sock)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = self.clock()
                for entry in self._watches:
                    if not entry.expired and entry.deadline <= now:
                        entry.expired = True
                        for sock in entry.sockets:
                            _cut(sock)
                waiting = [e.deadline for e in self._watches if not e.expired]
                self._changed.wait(min(waiting) - now if waiting else None)


def _cut(sock: socket.socket) -> None:
    """End every read and write on ``sock`` now, from another thread. The plain socket's shutdown even for
    TLS: SSLSocket.shutdown would drop its SSL object under the thread reading through it."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


DEADLINES = Deadlines()


class _WatchedHTTP(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        DEADLINES.opened(self.sock)

    def request(self, *args, **kwargs) -> None:   # passed through as given
        DEADLINES.opened(self.sock)   # a connection from the pool: connect() is not called again
        super().request(*args, **kwargs)


class _WatchedHTTPS(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        DEADLINES.opened(self.sock)

    def request(self, *args, **kwargs) -> None:
        DEADLINES.opened(self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, its connections registered with ``DEADLINES`` (through a proxy too)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
