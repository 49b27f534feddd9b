"""gunicorn, embedded, with asyncio workers: supervised processes that slow clients cannot stall.

gunicorn supervises the server processes (restarts one that dies, drains them
on SIGTERM: requests in flight finish) so eventmap does not have to. Each
process runs uvicorn's event loop (the ``uvicorn-worker`` worker class) instead
of gunicorn's threads: with threads, seven clients that sent headers slowly, or
less body than they promised, held every thread and stopped all intake. On the
loop a waiting client costs a coroutine; the collector's store writes run in a
small thread pool once a request has fully arrived (engine/serve/asgi.py).

uvicorn has a keep-alive timeout but none for a request's headers: a client
that trickles one header byte at a time keeps its connection forever.
``GuardedHttp`` adds that deadline, a size bound for headers and for the
trailers after a chunked body (httptools has none), and a bound on open
connections per process. It is built on uvicorn's
httptools protocol rather than h11's: h11 parses in pure Python, a large share
of the server's CPU per request (issue 16).
``when_ready`` prints the address actually bound (port 0 picks a free one).
"""
from __future__ import annotations

import sys
from typing import Any

import httptools
from gunicorn.app.base import BaseApplication
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from .asgi import AsgiCollector
from .config import ServerOptions
from .metrics import Refusals

MAX_HEADER_BYTES = 16 * 1024   # a request's line, headers and trailers; more is answered 400 by GuardedHttp
HEAD_TOO_LARGE = f"the request line and headers (with any trailers) are over {MAX_HEADER_BYTES // 1024} KB\n"


class GunicornServer(BaseApplication):
    def __init__(self, app, options: ServerOptions, on_exit=None, refusals: Refusals | None = None):
        """``refusals``: where the protocol counts what it refuses before the app sees a request (the
        collector's shared counters; None for an app that keeps no such metric, the console alone)."""
        self.app, self.options, self.exit_hook, self.refusals = app, options, on_exit, refusals
        super().__init__(prog="eventmap serve")

    def load_config(self):
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        settings = {
            "bind": [f"{host}:{self.options.port}"],
            "workers": self.options.workers,
            "worker_class": worker_class(self.options, self.refusals),
            "timeout": 60,               # a stuck process is replaced after this
            "graceful_timeout": 20,      # requests in progress get this long to finish on SIGTERM
            "keepalive": 5,              # SDKs send batch after batch on one connection
            "loglevel": "info",
            "accesslog": None,           # request lines are not logged; they carry nothing a person needs
            "when_ready": _announce,
            "on_exit": self._on_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 25.1+ opens a control socket at one path per user: two servers would fight over it
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return AsgiCollector(self.app, self.options)

    def _on_exit(self, server):
        if self.exit_hook:
            self.exit_hook()


def worker_class(options: ServerOptions, refusals: Refusals | None) -> type:
    """The gunicorn worker class: uvicorn on asyncio, speaking HTTP/1.1 through ``GuardedHttp``."""
    protocol = type("GuardedHttp", (GuardedHttp,), {"header_timeout": options.header_timeout,
                                                     "max_connections": options.max_connections,
                                                     "refusals": refusals})
    # proxy_headers off: the collector decides which proxies to trust (server.trusted_proxies), not uvicorn;
    # ws off: an upgrade would be handed to uvicorn's WebSocket protocol, past GuardedHttp's bounds
    kwargs: dict[str, Any] = {"loop": "asyncio", "http": protocol, "ws": "none", "lifespan": "off",
                              "proxy_headers": False, "server_header": False}
    return type("EventmapWorker", (UvicornWorker,), {"CONFIG_KWARGS": kwargs})


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol on httptools (llhttp, in C) with a deadline and a size bound for headers,
    and a bound on connections.

    The deadline runs from the connection (or the end of the previous answer)
    until the request's headers are complete, however slowly the bytes come.
    llhttp keeps no buffer and so has no size limit: the request line and
    headers are counted here, as Node.js counts them on the same parser.
    Trailers (header lines after a chunked body's last chunk) count against
    the same bound, head included, and are dropped: ASGI has no place for them.
    A connection over the bound is answered 503 and closed at once.
    """

    header_timeout = 10.0
    max_connections = 1000
    refusals: Refusals | None = None

    def connection_made(self, transport) -> None:
        self._header_timer: Any = None
        self._head_bytes: int | None = 0   # bytes of the head awaited so far; None while a request's body comes
        self._partial = False              # part of the awaited request has arrived
        self._head_size = 0                # the request's head, as measured in on_headers_complete
        # From a chunk's size line until its data (or the message end): head and trailers so far, as the
        # parser reports them, and counted in whole pieces (a trailer in progress sits in httptools' buffer)
        self._trailers: int | None = None
        self._trailer_pieces = 0
        super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]  # a proxy
        if len(self.connections) > self.max_connections:
            self._refuse(503, b"Service Unavailable", b"too many open connections; send it again\n",
                         b"Retry-After: 1\r\n")
            return
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        """A piece that arrives while headers are awaited is counted whole; a head that ends inside it is
        measured in ``on_headers_complete``, since the rest of the piece may be body."""
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        elif self._trailers is not None:
            self._trailer_pieces += len(data)
        super().data_received(data)
        if self._over_limit() and not self.transport.is_closing():
            self.send_400_response(HEAD_TOO_LARGE)
        self._watch_headers()

    def on_message_begin(self) -> None:
        self._partial = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        # what llhttp handed over: the URL, and each header with its ': ' and line end
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEADER_BYTES:
            self._head_bytes = size
            raise httptools.HttpParserError(HEAD_TOO_LARGE)   # stops the parser; uvicorn answers 400
        self._head_bytes, self._partial, self._head_size = None, False, size
        super().on_headers_complete()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailers is None:
            super().on_header(name, value)
            return
        self._trailers += len(name) + len(value) + 4   # a trailer: counted, and dropped
        if self._trailers > MAX_HEADER_BYTES:
            raise httptools.HttpParserError(HEAD_TOO_LARGE)

    def on_chunk_header(self) -> None:
        """A chunk's size line: if it is the last chunk's (size 0), trailers follow; its data says otherwise."""
        self._trailers = self._trailer_pieces = self._head_size

    def on_body(self, body: bytes) -> None:
        self._trailers = None
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_bytes = 0                 # the next request's head starts here
        self._trailers = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """On SIGTERM: a request whose body is still arriving is dropped (it was not acknowledged; the client
        sends it again), so a slow client cannot hold the stop up; requests that arrived whole finish (a
        pipelined request behind one being answered is left to uvicorn: dropping it would drop both)."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_started and not self.pipeline:
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """The request could not be read (malformed, or its head or trailers over MAX_HEADER_BYTES): counted too."""
        if self.refusals is not None:
            self.refusals.count(400)
        if self._over_limit():
            msg = HEAD_TOO_LARGE      # and not uvicorn's "Invalid HTTP request received." for it
        super().send_400_response(msg)

    def _over_limit(self) -> bool:
        if self._head_bytes is not None:
            return self._head_bytes > MAX_HEADER_BYTES
        return self._trailers is not None and max(self._trailers, self._trailer_pieces) > MAX_HEADER_BYTES

    def _watch_headers(self) -> None:
        """A timer runs while the connection waits for a request's headers with no request unanswered."""
        waiting = (self._head_bytes is not None and (self.cycle is None or self.cycle.response_complete)
                   and not self.transport.is_closing())
        if waiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        elif not waiting:
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._partial:                    # part of a request came
            self._refuse(408, b"Request Timeout",
                         f"the request headers did not arrive within {self.header_timeout:g}s\n".encode())
        else:                                # an idle connection
            self.transport.close()

    def _refuse(self, status: int, phrase: bytes, text: bytes, more: bytes = b"") -> None:
        """Answer outside uvicorn (no request was read, so it has no cycle to answer with) and close."""
        if self.refusals is not None:
            self.refusals.count(status)
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n%s\r\n%s" % (status, phrase, len(text), more, text))
        self.transport.close()


class JoinedWrites:
    """A transport whose writes made in one turn of the event loop leave in one send.

    uvicorn writes an answer's status line and headers, then its body, as two
    sends: two system calls, two TCP segments, and a client that wakes twice.
    Joined, a small answer is one of each. Nothing waits longer than the
    current turn of the loop; everything else is the transport's own.
    """

    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._send)
        self._pending.append(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def _send(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def _announce(server) -> None:
    for listener in server.LISTENERS:
        print(f"eventmap serve: listening on {listener}", file=sys.stderr, flush=True)
