"""The collector as a WSGI application: Segment's HTTP API, vendor webhooks, health and metrics.

Every accepted request is written to the store (durable when the write returns;
requests arriving together share one commit) before the 200 goes out, so an
acknowledged event survives a killed server: as events with their deliveries
(``server.intake: validate``), or whole, for the inbox processor to fan out
(``queue``). The store is opened per process, on first use: a server process
forked from another must not share its SQLite connections.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus

from ..intake import UNSTORABLE, Intake
from ..secrets import masked_path
from ..store import INTAKE, QUEUED, REJECTED, NewDelivery, NewEvent, Received, Store
from ..validate import storable
from . import metrics
from .browser import BUNDLE_CACHE, SCRIPT, SETTINGS_CACHE, OriginRefused
from .calls import decide_request
from .config import ServeConfig, WebhookSource
from .hosts import misdirected
from .inbox_limit import MB, InboxLimit
from .refusal_log import BODY_KEY, RefusalLog
from .segment_api import (
    BATCH_LIMIT,
    CALLS,
    ApiError,
    basic_credentials,
    describe_limit,
    items_of,
    limit_for,
    parse_json,
    read_body,
)

log = logging.getLogger("eventmap.serve")
JSON = "application/json"
REFUSED = "eventmap.refused"   # an environ key: the ApiError the server answers instead of running the request
KEEP = "eventmap.keep"         # an environ key: what ingest keeps in the inbox before its answer may go out
KEPT_AS_EVENTS = ("invalid_event",)       # refusals whose events the store keeps (rejected at intake): not sampled
SUCCESS = json.dumps({"success": True})   # Segment's answer to an accepted request
FAILED = json.dumps({"success": False, "code": "internal",
                     "message": "the server failed; the request was not stored, send it again"})


@dataclass
class Reply:
    """An answer: status, headers and body, and the inbox write it waits for (``server.intake: queue``)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    keep: list[Received] | None = None


class Collector:
    def __init__(self, config: ServeConfig, engine, routes: list, open_store, clock=time.time, console=None):
        self.config, self.engine, self.routes, self.console = config, engine, routes, console
        self.open_store, self.clock = open_store, clock
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._intake: Intake | None = None
        self._inbox_limit: InboxLimit | None = None
        self._pid: int | None = None
        self.refusals = metrics.Refusals()   # made here, before gunicorn forks, so every process shares it
        self.inbox_full = metrics.Count()    # likewise: requests refused because the inbox was full
        self.refusal_log = RefusalLog(self.store, config, clock)   # a sample of refused requests for the console

    def __repr__(self) -> str:
        return f"<Collector {self.config.file}>"

    # --- per-process store
    def store(self) -> Store:
        return self._opened()[0]

    def intake(self) -> Intake:
        return self._opened()[1]

    def _opened(self) -> tuple[Store, Intake]:
        with self._lock:
            if self._pid != os.getpid() or self._store is None or self._intake is None:
                self._store = self.open_store()
                self._intake = Intake(self.engine, self.routes, self._store, self.config.delivery.dedupe_window,
                                      clock=self.clock, plans=self.config.plans)
                self._inbox_limit = None
                self._pid = os.getpid()
            return self._store, self._intake

    def inbox_limit(self) -> InboxLimit:
        """This process's view of how full the inbox is (``server.intake: queue``), made on first use."""
        store = self.store()
        with self._lock:
            if self._inbox_limit is None:
                server = self.config.server
                self._inbox_limit = InboxLimit(store.inbox_size, server.inbox_max_requests, server.inbox_max_mb * MB)
            return self._inbox_limit

    # --- WSGI
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "") or "/"
        if self.console is not None and (path == "/console" or path.startswith("/console/")):
            return self.console(environ, start_response)   # the web console (engine/console)
        reply = self.reply(environ)
        if reply.keep:
            try:
                self.store().receive(reply.keep)
            except Exception as exc:  # noqa: BLE001  answered 500 by kept()
                reply = self.kept(reply, environ, exc)
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", reply.headers)
        return [reply.body] if environ.get("REQUEST_METHOD") != "HEAD" else []

    def answers_on_loop(self, method: str, path: str) -> bool:
        """Whether a request can be answered on the server's event loop (``reply``, then its ``keep``
        written with ``Store.receive_later``): with ``server.intake: queue`` a /v1/ call only checks the
        request and keeps it, which costs less than handing it to a thread."""
        return self.config.server.intake == "queue" and path.startswith("/v1/") and method in ("POST", "OPTIONS")

    def reply(self, environ) -> Reply:
        """The answer to a request, all but the inbox write it may wait for (``Reply.keep``)."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "") or "/"
        shown = masked_path(path)   # a settings or script path carries a write key
        try:
            status, content_type, body, extra = self.dispatch(method, path.rstrip("/") or "/", environ)
        except ApiError as exc:
            log.info("%s %s: %s %s", method, shown, exc.status, exc.message)
            self._sample(environ, exc)
            return self._reply(environ, exc.status, JSON, _json({"success": False, "code": exc.code,
                                                                 "message": exc.message}),
                               cors=not isinstance(exc, OriginRefused))
        except Exception:  # a fault of ours: nothing was stored, so the client should try again
            log.exception("%s %s failed", method, shown)
            return self._reply(environ, 500, JSON, FAILED)
        return self._reply(environ, status, content_type, body, extra, keep=environ.pop(KEEP, None))

    def _sample(self, environ, exc: ApiError) -> None:
        """Keep a refused request in the console's sample (refusal_log.py): never a write of its own."""
        if exc.code not in KEPT_AS_EVENTS:
            self.refusal_log.note(environ, exc)

    def kept(self, reply: Reply, environ, error: BaseException | None) -> Reply:
        """The answer once the inbox write of ``reply`` ended: itself, or a 500 when it failed."""
        if error is None:
            return reply
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        log.error("%s %s failed: the request could not be stored", method, masked_path(path), exc_info=error)
        return self._reply(environ, 500, JSON, FAILED)

    def _reply(self, environ, status: int, content_type: str, body: str | bytes, extra: list | tuple = (),
               keep: list[Received] | None = None, cors: bool = True) -> Reply:
        if status >= 400:
            self.refusals.count(status)
        headers = list(extra)
        if cors and (environ.get("PATH_INFO") or "").startswith("/v1/"):
            headers += self.config.browser.cors_headers(environ)
        if status == 204:
            return Reply(status, headers, b"")
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        return Reply(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *headers], data,
                     keep)

    def dispatch(self, method: str, path: str, environ):
        if REFUSED in environ:   # decided by the server before the request got here (engine/serve/asgi.py)
            raise environ[REFUSED]
        if self.config.demo or path in ("/healthz", "/metrics"):   # no key needed (the demo takes any): the Host
            reason = misdirected(environ, self.config.server.hosts)   # is checked, against DNS rebinding (hosts.py)
            if reason:
                raise ApiError(421, "misdirected", reason)
        if path in ("/healthz", "/metrics"):
            _allow(method, ("GET", "HEAD"))
            return self.health() if path == "/healthz" else self.metrics()
        parts = path.strip("/").split("/")
        call = len(parts) == 2 and parts[0] == "v1" and parts[1] in CALLS
        settings = len(parts) == 4 and parts[:2] == ["v1", "projects"] and parts[3] == "settings"
        if (call or settings) and method == "OPTIONS":
            return 204, JSON, "", self.config.browser.preflight_headers()   # CORS preflight: no key, no body
        if call:
            _allow(method, ("POST",))
            return self.ingest(CALLS[parts[1]], environ)
        if settings:
            _allow(method, ("GET", "HEAD"))
            return self.settings(parts[2], environ)
        if len(parts) == 4 and parts[:2] == ["analytics.js", "v1"] and parts[3] in ("analytics.min.js", "analytics.js"):
            _allow(method, ("GET", "HEAD"))
            return self.analytics_js(parts[2])
        if len(parts) == 3 and parts[:2] == ["analytics-next", "bundles"]:
            _allow(method, ("GET", "HEAD"))
            return self.analytics_js_chunk(parts[2])
        if len(parts) == 2 and parts[0] == "sources":
            _allow(method, ("POST",))
            return self.webhook(parts[1], environ)
        raise ApiError(404, "not_found", f"no such endpoint: {masked_path(path)} (expected POST /v1/batch, /v1/track, ..., "
                                         f"GET /v1/projects/WRITE_KEY/settings, POST /sources/NAME, "
                                         f"GET /healthz or GET /metrics)")

    # --- endpoints
    def health(self):
        self.store().next_due([INTAKE], self.clock())  # the store answers a query
        return 200, JSON, _json({"status": "ok"}), []

    def metrics(self):
        store = self.store()
        requests, size = store.inbox_size()
        text = metrics.render(store.counts(self.clock()), self.refusals.snapshot(), requests, size,
                              self.inbox_full.value(), store.violation_counts(),
                              logins=self.console.logins.snapshot() if self.console is not None else None)
        return 200, metrics.CONTENT_TYPE, text, []

    def settings(self, key: str, environ):
        """analytics.js's settings document (its CDN's ``/v1/projects/KEY/settings``)."""
        source = self.config.write_keys.source_for(key)
        if source is None:
            raise ApiError(404, "not_found", "no source has this write key: analytics.js cannot load its settings "
                                             "(check the write key in the page and the sources in the configuration)")
        self.config.browser.check(environ, source)
        document = self.config.browser.settings(key, source, environ)
        return 200, JSON, _json(document), [("Cache-Control", SETTINGS_CACHE)]

    def analytics_js(self, key: str):
        """The snippet's script, ``/analytics.js/v1/KEY/analytics.min.js``, when server.analytics_js is set."""
        bundles = self._bundles()
        if self.config.write_keys.source_for(key) is None:
            raise ApiError(404, "not_found", "no source has this write key: no analytics.js for it")
        return 200, SCRIPT, bundles.standalone(), [("Cache-Control", SETTINGS_CACHE)]

    def analytics_js_chunk(self, name: str):
        """The parts analytics.js loads on demand from ``{cdn}/analytics-next/bundles/``."""
        chunk = self._bundles().chunk(name)
        if chunk is None:
            raise ApiError(404, "not_found", f"no analytics.js bundle named {name!r}")
        return 200, SCRIPT, chunk, [("Cache-Control", BUNDLE_CACHE)]

    def _bundles(self):
        if self.config.browser.bundles is None:
            raise ApiError(404, "not_found", "this server does not serve analytics.js: set server.analytics_js "
                                             "to @segment/analytics-next's dist/umd folder (see docs/server.md)")
        return self.config.browser.bundles

    def ingest(self, call: str, environ):
        offered = (basic_credentials(environ.get("HTTP_AUTHORIZATION")) or ("", ""))[0]
        source = self._source(offered) if offered else None   # a wrong key is refused before the body is read
        if source is not None:
            self.config.browser.check(environ, source)
        raw = read_body(environ["wsgi.input"], _length(environ), environ.get("HTTP_CONTENT_ENCODING"),
                        limit_for(call), describe_limit(call))
        body = parse_json(raw)
        if source is None:
            key = body.get("writeKey")
            environ[BODY_KEY] = key if isinstance(key, str) else None   # for the refusal sample, if refused
            source = self._source(key if isinstance(key, str) else None)
            self.config.browser.check(environ, source)
        now = self.clock()
        ip = self.config.browser.client_ip(environ)
        if self.config.server.intake == "queue":   # kept whole; the inbox processor makes its events (inbox.py)
            items_of(call, body)   # a malformed batch is still refused now, while the client can hear why
            kept = _without_write_key(raw, body)
            if not self.inbox_limit().admit(len(kept)):
                return self._inbox_full(environ)
            environ[KEEP] = [Received(call, kept, now, ip, source=source)]   # 200 once durable
            return 200, JSON, SUCCESS, []
        intake = self.intake()
        decided = decide_request(intake, call, body, now, ip, source)
        receipts = intake.accept_decided(decided)
        rejected: list[dict] = [{"index": i, "messageId": r.message_id, "errors": [e.as_dict() for e in r.errors]}
                                for i, r in enumerate(receipts) if r.rejected]
        if call != "batch":
            if rejected:
                raise ApiError(400, "invalid_event", f"the event was not accepted: {_summary(rejected[0]['errors'])}")
            return 200, JSON, SUCCESS, []
        if len(rejected) == len(decided):
            return 400, JSON, _json({"success": False, "code": "invalid_batch", "accepted": 0, "rejected": rejected,
                                     "message": f"none of the {len(decided)} events was accepted; "
                                                f"the first: {_summary(rejected[0]['errors'])}"}), []
        return 200, JSON, _json({"success": True, "accepted": len(decided) - len(rejected), "rejected": rejected}), []

    def _inbox_full(self, environ):
        """429 with Retry-After: the inbox holds as much as it may (``inbox_limit.py``); counted in /metrics."""
        self.inbox_full.add()
        server = self.config.server
        wait = math.ceil(server.retry_after)
        message = (f"the inbox is full (server.inbox_max_requests {server.inbox_max_requests}, server.inbox_max_mb "
                   f"{server.inbox_max_mb}): events are arriving faster than they are processed; send it again in "
                   f"{wait}s")
        self._sample(environ, ApiError(429, "inbox_full", message))
        return 429, JSON, _json({"success": False, "code": "inbox_full", "message": message}), [("Retry-After", str(wait))]

    def webhook(self, name: str, environ):
        source = self.config.webhooks.get(name)
        if source is None:
            known = ", ".join(sorted(self.config.webhooks)) or "none configured"
            raise ApiError(404, "not_found", f"no webhook source named {name!r} (known: {known})")
        if not _authorised(source, environ):
            raise ApiError(401, "unauthorized", f"missing or wrong credentials for the webhook source {name!r}")
        payload = parse_json(read_body(environ["wsgi.input"], _length(environ), environ.get("HTTP_CONTENT_ENCODING"),
                                       BATCH_LIMIT, "the 500 KB limit per webhook request"))
        delivery_id = payload.get("id")
        message_id = f"{name}:{delivery_id}" if isinstance(delivery_id, (str, int)) and delivery_id != "" else None
        unstorable = storable.problems(payload)
        if unstorable:  # kept as rejected, with the bad parts replaced, and the vendor told why
            payload, message_id = storable.safe_copy(payload), message_id and storable.safe_text(message_id)
            errors = [e.as_dict() for e in unstorable]
            delivery = NewDelivery(source.pseudo_destination, REJECTED, UNSTORABLE, errors)
        else:  # mapped after the answer (lookups may be slow): a queued delivery keeps it safe till then
            delivery = NewDelivery(source.pseudo_destination, QUEUED)
        self.store().accept([NewEvent(payload, message_id, [delivery])], self.clock(), self.config.delivery.dedupe_window)
        if unstorable:
            raise ApiError(400, "invalid_payload", f"the payload was not accepted: {_summary(errors)}")
        return 200, JSON, SUCCESS, []

    # --- helpers
    def _source(self, key: str | None) -> str:
        if not self.config.write_keys:
            raise ApiError(401, "unauthorized", "no write keys are configured: add a source with a write_key "
                                                "to the configuration file")
        if not key:
            raise ApiError(401, "unauthorized", "no write key: send it as the HTTP Basic user or as writeKey in the body")
        source = self.config.write_keys.source_for(key)
        if source is None:
            raise ApiError(401, "unauthorized", "unknown write key")
        return source


def _without_write_key(raw: bytes, body: dict) -> bytes:
    """The body to keep in the inbox: as received, unless it carries the write key (a browser's text/plain
    request does), which never goes into the store. Written again as ASCII JSON, which holds whatever
    the parser read (a lone surrogate included), for the processor to read back the same."""
    batch = body.get("batch")
    items: list = batch if isinstance(batch, list) else []
    if "writeKey" not in body and not any(isinstance(item, dict) and "writeKey" in item for item in items):
        return raw
    kept = {k: v for k, v in body.items() if k != "writeKey"}
    if items:
        kept["batch"] = [{k: v for k, v in item.items() if k != "writeKey"} if isinstance(item, dict) else item
                         for item in items]
    return json.dumps(kept, separators=(",", ":")).encode("ascii")


def _authorised(source: WebhookSource, environ) -> bool:
    ok = True
    if source.basic:
        offered = basic_credentials(environ.get("HTTP_AUTHORIZATION")) or (None, None)
        ok = source.basic[0].matches(offered[0]) & source.basic[1].matches(offered[1])
    for header, secret in source.headers.items():
        ok &= secret.matches(environ.get("HTTP_" + header.upper().replace("-", "_")))
    return ok


def _allow(method: str, allowed: tuple) -> None:
    if method not in allowed:
        raise ApiError(405, "method_not_allowed", f"{method} is not allowed here (allowed: {', '.join(allowed)})")


def _length(environ) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _summary(errors: list) -> str:
    shown = "; ".join(f"{e['path']}: {e['message']}" if e.get("path") else e["message"] for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return shown + more


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False)
