"""The WSGI collector behind an asyncio server: a slow client holds a coroutine, never a thread.

uvicorn reads requests on an event loop. This adapter reads the whole body
there too, with a deadline and a size bound, and only then runs the collector
(validation and the store's durable write) in a small pool of threads. So any
number of clients that trickle their bytes cost memory, not the few threads that
write to the store. With ``server.intake: queue`` a /v1/ call needs no thread at
all: its checks run on the loop, and the loop waits for its inbox write (group-
committed by the store's writer thread) as it waits for a socket.

Backpressure: when more requests wait for those threads than
``server.queue_depth``, the store is not keeping up; the next ones are answered
429 with ``Retry-After`` at once (the SDKs wait that long and send again)
instead of waiting until the client gives up.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

from ..store import Received
from .app import REFUSED, Collector
from .config import ServerOptions
from .segment_api import BATCH_LIMIT, ApiError

log = logging.getLogger("eventmap.serve")

# Bodies are read whole before the collector sees them; this bounds the memory one request may take. It is
# above every limit the collector applies (it refuses a larger body itself, naming its limit), so no
# request is decided here on size.
BODY_CAP = 2 * BATCH_LIMIT
READ_THREADS = 2   # per server process, for GET and HEAD (metrics, health): reads, which never wait for a writer


class AsgiCollector:
    def __init__(self, collector: Collector, options: ServerOptions):
        self.collector, self.options = collector, options
        self._pid: int | None = None
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._waiting = {"write": 0, "read": 0}   # requests running in, or waiting for, each pool (loop only)

    def __repr__(self) -> str:
        return f"<AsgiCollector {self.collector!r}>"

    def pool(self, kind: str) -> ThreadPoolExecutor:
        """Per server process (threads do not survive gunicorn's fork): ``write`` for requests that store
        events, ``read`` for GET and HEAD, so /metrics and /healthz answer while the writers are stuck."""
        if self._pid != os.getpid():
            self._pools = {"write": ThreadPoolExecutor(self.options.threads, thread_name_prefix="store"),
                           "read": ThreadPoolExecutor(READ_THREADS, thread_name_prefix="read")}
            self._pid, self._waiting = os.getpid(), {"write": 0, "read": 0}
        return self._pools[kind]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        environ = _environ(scope)
        declared = _declared_length(environ)
        keep_alive = True
        if declared is not None and declared > BODY_CAP:
            body = b""              # the collector refuses it from the length alone, unread
            keep_alive = False
        else:
            try:
                async with asyncio.timeout(self.options.body_timeout):   # no task of its own, as wait_for makes
                    read = await _read_body(receive)
            except TimeoutError:
                body, keep_alive = b"", False
                environ[REFUSED] = ApiError(408, "timeout", f"the request body did not arrive within "
                                                            f"{self.options.body_timeout:g}s (send it again)")
            else:
                if read is None:     # the client went away
                    return
                body, keep_alive = read, len(read) <= BODY_CAP
        environ["wsgi.input"] = io.BytesIO(body)
        kind = "read" if scope["method"] in ("GET", "HEAD") else "write"
        threads = READ_THREADS if kind == "read" else self.options.threads
        if REFUSED not in environ and self._waiting[kind] >= threads + self.options.queue_depth:
            wait = math.ceil(self.options.retry_after)
            environ[REFUSED] = ApiError(429, "busy", f"the store is not keeping up ({self._waiting[kind]} requests "
                                                     f"are waiting in this server process); send it again in {wait}s")
            await self._answer(send, _call(self.collector, environ), keep_alive, [(b"retry-after", str(wait).encode())])
            return
        if REFUSED in environ:
            await self._answer(send, _call(self.collector, environ), keep_alive)
            return
        if isinstance(self.collector, Collector) and self.collector.answers_on_loop(scope["method"], scope["path"]):
            reply = self.collector.reply(environ)
            if reply.keep:
                self._waiting[kind] += 1
                try:
                    reply = self.collector.kept(reply, environ, await self._kept(reply.keep))
                finally:
                    self._waiting[kind] -= 1
            await self._answer(send, (reply.status, reply.headers, reply.body), keep_alive)
            return
        pool = self.pool(kind)
        self._waiting[kind] += 1
        try:
            answer = await asyncio.get_running_loop().run_in_executor(pool, _call, self.collector, environ)
        finally:
            self._waiting[kind] -= 1
        await self._answer(send, answer, keep_alive)

    async def _kept(self, requests: list[Received]) -> BaseException | None:
        """Write ``requests`` to the inbox without holding a thread while the disk flushes (group-committed
        with whatever else is arriving); None once they are durable, else the error."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future = loop.create_future()

        def then(error: BaseException | None) -> None:   # in the store's writer thread
            with contextlib.suppress(RuntimeError):   # the loop has closed (the server stopped): nobody waits
                loop.call_soon_threadsafe(_settle, outcome, error)

        try:
            self.collector.store().receive_later(requests, then)
        except Exception as exc:  # noqa: BLE001  the store could not be opened: answered 500
            return exc
        return await outcome

    @staticmethod
    async def _answer(send, answer, keep_alive: bool, more: list | None = None) -> None:
        status, headers, body = answer
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers] + (more or [])
        if not keep_alive:   # the rest of the body is not read: the connection cannot carry another request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _settle(outcome: asyncio.Future, error: BaseException | None) -> None:
    if not outcome.done():
        outcome.set_result(error)


def _call(collector: Collector, environ: dict) -> tuple[int, list, bytes]:
    """Run the WSGI collector; (status, headers, body)."""
    started: list = []

    def start_response(status: str, headers: list, exc_info=None):
        started[:] = [int(status.split(" ", 1)[0]), headers]

    body = b"".join(collector(environ, start_response))
    return started[0], started[1], body


async def _read_body(receive) -> bytes | None:
    """The whole body, or the first ``BODY_CAP + 1`` bytes of a longer one; None when the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > BODY_CAP or not message.get("more_body"):
            return b"".join(chunks)[:BODY_CAP + 1]


def _environ(scope) -> dict:
    """The WSGI environ (PEP 3333) for an ASGI http scope."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.errors": _LogStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").upper().replace("-", "_"), raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
            continue
        key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _declared_length(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _LogStream(io.TextIOBase):
    """wsgi.errors, into the log."""

    def write(self, text: str) -> int:
        if text.strip():
            log.error("%s", text.rstrip())
        return len(text)
