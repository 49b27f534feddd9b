"""The web console as a WSGI application, mounted under ``/console``.

Pages are rendered on the server from Jinja2 templates with autoescaping on:
event data is untrusted, so it only ever reaches a page as escaped text. htmx
(a file in ``static/``) refreshes the live parts; nothing is built on the
user's machine. Actions are POSTs that must carry the CSRF token of the
console's cookie (SameSite=Strict, signed for the login: csrf.py) and come from
the console's own origin.

Before a page: a console without a login answers only for its own host names
(engine/serve/hosts.py: DNS rebinding); one with a login makes a client that
keeps getting it wrong wait (login.py), and sets its cookie only once the login worked.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..problems import EventmapError
from ..secrets import Masker, masked_path
from ..serve.hosts import misdirected
from ..serve.segment_api import basic_credentials
from ..store import INTAKE, QUEUED, RETRYING
from . import PREFIX, pages
from .csrf import Tokens, login_of
from .login import GLOBAL_FAILURES, LoginGuard, retry_after
from .tester import LOAD, RENDER, Tester
from .violations import violations_page

log = logging.getLogger("eventmap.console")

COOKIE = "eventmap_console_csrf"
FORM_LIMIT = 256 * 1024   # the tester's pasted event and the dead-letter selection; bigger is refused
OVERVIEW_FOR = 2.0        # seconds one process reuses the overview: many open pages cost one set of reads
NEEDS_LOGIN = "the console needs its username and password"
CHALLENGE = ("WWW-Authenticate", 'Basic realm="eventmap console", charset="UTF-8"')
STATIC = {"htmx.min.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
HEADERS = [
    # the templates escape everything; this is the second wall: no inline script, no framing
    ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]


class Refused(EventmapError):
    """A request the console answers with an error page (bad form, cross-site, unknown page)."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


class Console:
    """The console for one configuration: its setup (engine, routes, sources) and its store."""

    def __init__(self, setup, *, login=None, enabled: bool = True, disabled_reason: str = "", clock=time.time,
                 dry_run: bool = False):
        self.setup, self.login, self.enabled, self.disabled_reason = setup, login, enabled, disabled_reason
        self.clock, self.dry_run = clock, dry_run or setup.config.demo   # dry_run: the tester sends nothing
        self.masker = Masker(frozenset(s for r in setup.routes for s in r.secrets) | frozenset(setup.config.secrets()))
        folder = Path(str(resources.files(__package__)))
        self.templates = Environment(loader=FileSystemLoader(folder / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self.templates.filters.update(when=pages.when, pretty=pages.pretty, seconds=pages.seconds, plural=pages.plural)
        self.static = folder / "static"
        self.logins = LoginGuard()   # made before the server forks: its counts are shared by every process
        self.tokens = Tokens()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._store = None
        self._client: Any = None
        self._overview: dict[str, tuple[float, dict]] = {}   # per chart range

    def __repr__(self) -> str:
        return f"<Console {self.setup.config.file}>"

    def store(self):
        """Opened per process, on first use: a forked server process must not share SQLite connections."""
        with self._lock:
            if self._pid != os.getpid():
                self._store = self.setup.open_store()
                self._client = None
                self._pid = os.getpid()
            return self._store

    def client(self):
        """The HTTP client deliveries use, for the tester's sending: made per process, on first use."""
        self.store()
        with self._lock:
            if self._client is None:
                # only when something is sent: the console's pages load without the HTTP client
                from ..deliver.http import HttpClient
                self._client = HttpClient(timeout=self.setup.config.delivery.timeout)
            return self._client

    # --- WSGI
    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "") or "/"
        request = Request(environ, self.setup.config.browser.scheme(environ))
        extra: list[tuple[str, str]] = []
        try:
            if not self.enabled:
                raise Refused(404, self.disabled_reason)
            if self.login is None:
                reason = misdirected(environ, self.setup.config.server.hosts)   # no key to ask for: check the Host
                if reason:
                    raise Refused(421, reason)
                request.bind(self.tokens, login_of(None))
                status, content_type, body, extra = self.dispatch(method, path.rstrip("/") or "/", request)
            else:
                status, content_type, body, extra = self.logged_in(method, path, request)
        except Refused as exc:
            status, content_type, extra = exc.status, "text/html; charset=utf-8", exc.headers
            body = self.render("error.html", request, status=exc.status, message=exc.message)
        except Exception:  # a fault of ours: say so on the page, never a traceback
            log.exception("console %s %s failed", method, masked_path(path))
            status, content_type = 500, "text/html; charset=utf-8"
            body = self.render("error.html", request, status=500, message="the console failed; the server log says why")
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data))), *_merged(HEADERS, extra)]
        if request.new_token:   # only once the login worked: never on a 401, 421 or 429
            secure = "; Secure" if request.scheme == "https" else ""
            headers.append(("Set-Cookie", f"{COOKIE}={request.token}; Path={PREFIX}; HttpOnly; SameSite=Strict{secure}"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data] if method != "HEAD" else []

    def logged_in(self, method: str, path: str, request: Request):
        """The page, once the login is right; a 401 when it is wrong, a 429 while its client must wait."""
        environ = request.environ
        client = self.setup.config.browser.client_ip(environ) or ""
        now = self.clock()
        wait = self.logins.wait(client, now)
        if wait > 0:
            raise Refused(429, f"too many wrong usernames or passwords: try again in {retry_after(wait)} s",
                          [("Retry-After", retry_after(wait))])
        offered = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
        if offered is None:   # none offered yet (a browser's first request): the prompt, and no failure
            return 401, "text/plain; charset=utf-8", NEEDS_LOGIN, [CHALLENGE]
        if not self.login.matches(offered):
            verdict = self.logins.failed(client, now)
            log.warning("console: wrong username or password from %s (%d in a row%s)", client or "an unknown address",
                        verdict.in_a_row, f"; it waits {retry_after(verdict.wait)} s before the next try"
                        if verdict.wait else "", extra={"event": "console_login_failed", "client": client})
            if verdict.global_started:
                log.warning("console: %d wrong logins in the last minute from all clients: clients that have not "
                            "logged in lately wait for the minute to end", GLOBAL_FAILURES,
                            extra={"event": "console_login_backoff"})
            return 401, "text/plain; charset=utf-8", NEEDS_LOGIN, [CHALLENGE]
        self.logins.succeeded(client, now)
        request.bind(self.tokens, login_of(offered))
        return self.dispatch(method, path.rstrip("/") or "/", request)

    def dispatch(self, method: str, path: str, request: Request):
        rest = path[len(PREFIX):] or "/"
        parts = rest.strip("/").split("/")
        if parts[0] == "static" and len(parts) == 2 and parts[1] in STATIC:
            _allow(method, "GET", "HEAD")
            return 200, STATIC[parts[1]], (self.static / parts[1]).read_bytes(), [("Cache-Control", "max-age=3600")]
        html = "text/html; charset=utf-8"
        if rest == "/":
            _allow(method, "GET", "HEAD")
            return 200, html, self.page("overview.html", request, **self.overview(request.query)), []
        if rest == "/overview":
            _allow(method, "GET", "HEAD")
            return 200, html, self.render("_overview.html", request, **self.overview(request.query)), []
        if rest == "/refused":   # requests refused at the door (store/refusals.py)
            _allow(method, "GET", "HEAD")
            found = pages.refusals(self.store(), request.query, self.clock())
            return 200, html, self.page("refused.html", request, **pages.masked(self.masker, found)), []
        if parts[0] == "sent" and len(parts) == 2:   # one request as it was sent
            _allow(method, "GET", "HEAD")
            return 200, html, self.page("sent.html", request, sent=self.sent(parts[1])), []
        if rest in ("/events", "/events/rows"):
            _allow(method, "GET", "HEAD")
            filters = pages.event_query(request.query, self.clock())
            found = pages.masked(self.masker, pages.events(self.store(), filters.query))
            name = "events.html" if rest == "/events" else "_event_rows.html"
            older = {**filters.text, "before": found[-1].id} if found else filters.text
            return 200, html, self.page(name, request, events=found, filters=filters, page_size=pages.PAGE,
                                        destinations=[*pages.destination_names(self.setup), INTAKE],
                                        states=pages.FILTER_STATES,
                                        rows_url=f"{PREFIX}/events/rows?{urlencode(self._kept(request.query))}",
                                        older_url=f"{PREFIX}/events?{urlencode(older)}"), []
        if parts[0] == "deliveries" and len(parts) == 2:
            _allow(method, "GET", "HEAD")
            return 200, html, self.page("delivery.html", request, **self.delivery(parts[1])), []
        if rest == "/dead":
            _allow(method, "GET", "HEAD")
            return 200, html, self.page("dead.html", request, **self.dead(request.query)), []
        if rest == "/dead/confirm":
            _allow(method, "POST")
            form = request.checked_form()
            return 200, html, self.page("dead_confirm.html", request, **self.dead_selection(form)), []
        if rest == "/dead/retry":
            _allow(method, "POST")
            form = request.checked_form()
            count = self.retry(form)
            where = f"{PREFIX}/dead?" + urlencode({"retried": count, **_one(form, "destination")})
            return 303, "text/plain; charset=utf-8", f"{count} queued again", [("Location", where)]
        if rest == "/violations":   # tracking plans (engine/console/violations.py)
            _allow(method, "GET", "HEAD")
            found = violations_page(self.store(), self.setup, request.query, self.masker, self.clock())
            return 200, html, self.page("violations.html", request, **found), []
        if rest in ("/replays", "/replays/rows"):
            _allow(method, "GET", "HEAD")
            name = "replays.html" if rest == "/replays" else "_replay_rows.html"
            return 200, html, self.page(name, request, replays=pages.masked(self.masker, pages.replays(self.store()))), []
        if rest == "/tester":   # every action is a POST with the form's token; a GET only shows the form
            _allow(method, "GET", "HEAD", "POST")
            form = request.checked_form() if method == "POST" else request.query
            action = (_first(form, "action") or RENDER) if method == "POST" else LOAD
            found = self.tester().page(form, action, self.setup.config.browser.client_ip(request.environ), self.clock())
            return 200, html, self.page("tester.html", request, **found), []
        raise Refused(404, f"no console page at {path}")

    # --- pages
    def overview(self, query: dict) -> dict:
        now, chosen = self.clock(), pages.chart_range(query)
        with self._lock:
            kept = self._overview.get(chosen)
        if kept is not None and 0 <= now - kept[0] < OVERVIEW_FOR:
            return kept[1]
        found = pages.masked(self.masker, pages.overview(self.store(), self.setup, now, chosen))
        with self._lock:
            self._overview[chosen] = (now, found)
        return found

    def sent(self, text: str):
        if not text.isdigit() or len(text) > 18:
            raise Refused(404, f"no request {text!r}: request ids are numbers")
        found = self.store().sent_request(int(text))
        if found is None:
            raise Refused(404, f"no request {text} in the store (pruned with its deliveries, or never there)")
        return pages.masked(self.masker, found)

    @staticmethod
    def _kept(query: dict) -> dict:
        """The Events page's parameters its live refresh keeps (not paging: the refresh shows the newest)."""
        return {k: v[0] for k, v in query.items() if k != "before" and v and v[0]}

    def delivery(self, text: str) -> dict:
        if not text.isdigit():
            raise Refused(404, f"no delivery {text!r}: delivery ids are numbers")
        record = self.store().get(int(text))
        if record is None:
            raise Refused(404, f"no delivery {text} in the store (pruned, or never there)")
        found = pages.delivery(record, self.setup)
        if record.state in (QUEUED, RETRYING):   # why it still waits: how its destination has been answering
            found["waiting"] = self.store().answers(RETRYING, [record.destination]).get(record.destination, [])
        return pages.masked(self.masker, found)

    def dead(self, query: dict) -> dict:
        destination = _first(query, "destination")
        records = self.store().list(destination or None, "dead", limit=pages.PAGE, after_id=pages.number(query, "after"))
        return {"records": pages.masked(self.masker, records), "destination": destination,
                "destinations": pages.destination_names(self.setup), "retried": _first(query, "retried")}

    def dead_selection(self, form: dict) -> dict:
        ids = pages.ids(form.get("id", []))
        destination = _first(form, "destination")
        if not ids and not destination:
            raise Refused(400, "choose dead letters to retry (tick them), or a destination to retry all of its dead letters")
        if ids:
            chosen = [r for r in (self.store().get(i) for i in ids) if r is not None and r.state == "dead"]
        else:
            chosen = self.store().list(destination, "dead", limit=pages.PAGE)
        return {"records": pages.masked(self.masker, chosen), "ids": ids, "destination": destination,
                "all_of_destination": not ids}

    def retry(self, form: dict) -> int:
        if _first(form, "confirmed") != "yes":
            raise Refused(400, "a retry must be confirmed on the confirmation page")
        ids = pages.ids(form.get("id", []))
        destination = _first(form, "destination")
        if not ids and not destination:
            raise Refused(400, "nothing chosen to retry")
        count = self.store().requeue(self.clock(), ids=ids or None, destination=None if ids else destination)
        log.info("console: %d dead deliveries queued again (%s)", count,
                 f"ids {', '.join(map(str, ids))}" if ids else f"all of {destination}")
        return count

    def tester(self) -> Tester:
        return Tester(self.setup, self.masker, self.store(), self.client, self.dry_run)

    # --- rendering
    def page(self, name: str, request: Request, **values) -> str:
        return self.render(name, request, **values)

    def render(self, name: str, request: Request, **values) -> str:
        return self.templates.get_template(name).render(prefix=PREFIX, csrf=request.token, demo=self.setup.config.demo,
                                                        config_file=self.setup.config.file, **values)


class Request:
    """What the console reads from one request: the query, the form (for POSTs) and the CSRF token.

    ``scheme``: how the browser reached the console (https behind a trusted proxy that says so)."""

    def __init__(self, environ, scheme: str = "http"):
        self.environ, self.scheme = environ, scheme
        self.query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        self.token, self.new_token = "", False   # none until the login is known (bind)

    def bind(self, tokens: Tokens, login: bytes) -> None:
        """Take the cookie's token if it was issued for this login, else issue one (set with the answer)."""
        cookie = SimpleCookie()
        try:
            cookie.load(self.environ.get("HTTP_COOKIE", ""))
        except CookieError:  # a malformed cookie header is a missing token, not a failure
            cookie = SimpleCookie()
        found = cookie.get(COOKIE)
        if found is not None and tokens.valid(found.value, login):
            self.token, self.new_token = found.value, False
        else:
            self.token, self.new_token = tokens.issue(login), True

    def checked_form(self) -> dict:
        """The POSTed form, after the cross-site checks: same origin, and the cookie's token in the form."""
        site = self.environ.get("HTTP_SEC_FETCH_SITE")
        if site not in (None, "same-origin", "none"):
            raise Refused(403, f"refused: a cross-site request (Sec-Fetch-Site: {site})")
        origin = self.environ.get("HTTP_ORIGIN")
        if origin is not None and origin != self.own_origin():
            raise Refused(403, "refused: the request comes from another origin than the console's")
        form = self.form()
        offered = _first(form, "csrf")
        if self.new_token or not self.token or not offered \
                or not hmac.compare_digest(offered.encode(), self.token.encode()):
            raise Refused(403, "refused: the form's security token is missing or stale; reload the page and try again")
        return form

    def own_origin(self) -> str:
        host = self.environ.get("HTTP_HOST") or f"{self.environ.get('SERVER_NAME')}:{self.environ.get('SERVER_PORT')}"
        return f"{self.scheme}://{host}"

    def form(self) -> dict:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > FORM_LIMIT:
            raise Refused(413, f"the form is over the {FORM_LIMIT // 1024} KB limit")
        kind = (self.environ.get("CONTENT_TYPE") or "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            raise Refused(400, "expected a form (application/x-www-form-urlencoded)")
        raw = self.environ["wsgi.input"].read(length) if length else b""
        try:
            return parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise Refused(400, "the form is not UTF-8") from None


def _first(values: dict, key: str) -> str:
    found = values.get(key) or [""]
    return found[0]


def _one(values: dict, key: str) -> dict:
    value = _first(values, key)
    return {key: value} if value else {}


def _merged(defaults: list[tuple[str, str]], extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``defaults`` and ``extra``, a header in ``extra`` replacing the default of the same name (one
    Cache-Control on static files, not no-store beside max-age)."""
    named = {name.lower() for name, _ in extra}
    return [(name, value) for name, value in defaults if name.lower() not in named] + list(extra)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise Refused(405, f"{method} is not allowed here (allowed: {', '.join(allowed)})")



def console_for(setup, dry_run: bool = False) -> Console:
    """The console a configuration asks for: with its login; without one only in the demo (the server then
    listens on localhost only); otherwise off, and the page says how to turn it on. ``dry_run``: the server
    sends nothing (--dry-run), so neither does the mapping tester."""
    config = setup.config
    if config.console is not None:
        return Console(setup, login=config.console, dry_run=dry_run)
    if config.demo:
        return Console(setup, dry_run=True)
    return Console(setup, enabled=False,
                   disabled_reason=f"the console is off: add console: {{username: ..., password: {{env: ...}}}} "
                                   f"to {config.file} to turn it on")
