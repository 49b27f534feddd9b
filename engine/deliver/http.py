"""One HTTP client for everything eventmap sends, so tests can point it at localhost.

Lookups (a source enriching a webhook), steps and deliveries (a rendered request to a vendor) all
go through ``HttpClient.send``, so one policy holds for all of them (docs/operations.md):

* **Redirects are followed only on the same origin** and only where they keep the request what it
  was (``redirects.py``); any other 3xx is the answer, and final: following it would send the
  request's credentials, method and body wherever the vendor points, 169.254.169.254 included,
  and make that answer the step's.
* **An answer is read up to ``ANSWER_LIMIT``** (1 MiB); past it the body is an ``Excerpt`` and the
  connection is closed unread. A step or lookup that needs that answer fails (``answers.whole``).
* **``timeout`` is a deadline for the whole request**, not for each read (``deadline.py``).
* **A request that cannot be sent as built** (a header value HTTP cannot carry, a URL that does not
  parse) raises ``RequestError``: the request's own verdict, not the vendor failing.

``SavedResponses`` answers the same calls from files, for offline mapping and reproducible tests.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from urllib3.exceptions import LocationParseError

from .. import jsoncodec
from ..answers import (
    ANSWER_LIMIT,
    EXCERPT,
    Excerpt,
    RequestError,
    TransportError,
    is_retryable,
    retry_after,
    summarize,
)
from ..render.request import Request
from ..secrets import Masker
from ..validate import storable
from . import redirects
from .deadline import DEADLINES, WatchedAdapter

USER_AGENT = "eventmap/0.1 (+https://github.com/eventmap)"
CHUNK = 64 * 1024
# what requests raises for a request that is wrong as built, before any byte leaves: the same event
# would make the same request again, so it is final
UNSENDABLE = (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, requests.exceptions.MissingSchema,
              requests.exceptions.InvalidSchema, requests.exceptions.URLRequired, LocationParseError, UnicodeError)


@dataclass
class Response:
    status: int
    body: object = None          # parsed JSON when the answer is JSON, else text; an Excerpt past ANSWER_LIMIT
    headers: dict = field(default_factory=dict)
    dry_run: bool = False        # the dry-run sink answered, not a vendor: nothing was sent


class HttpClient:
    def __init__(self, timeout: float = 10.0, pool_size: int = 10):
        """``timeout``: seconds for the whole request, answer included; ``pool_size``: connections kept per
        host, as many as the threads that share this client."""
        self.timeout = timeout
        self.session = requests.Session()
        adapter = WatchedAdapter(pool_connections=4, pool_maxsize=max(1, pool_size))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        read_environment_once(self.session)

    def send(self, request: Request) -> Response:
        check_sendable(request)
        headers = {"User-Agent": USER_AGENT, **request.headers}
        with DEADLINES.watch(self.timeout) as watch:
            try:
                return self._exchange(request, headers)
            except UNSENDABLE as exc:
                shown = Masker(request.secrets).text(f"{type(exc).__name__}: {exc}")   # it may quote the URL
                raise RequestError(f"the request cannot be sent as built ({shown})", path="url") from None
            except requests.RequestException as exc:
                if watch.expired or isinstance(exc, requests.Timeout):
                    raise self._late(request) from None
                raise TransportError(f"cannot reach {_masked_url(request)}: {type(exc).__name__}") from None
            except Exception as exc:  # noqa: BLE001  a fault here, not the vendor's: this request's own verdict
                if watch.expired:
                    raise self._late(request) from None
                shown = Masker(request.secrets).text(f"{type(exc).__name__}: {exc}")
                raise RequestError(f"the request could not be sent: {shown}", final=False) from None

    def _exchange(self, request: Request, headers: dict) -> Response:
        """Send, follow the redirects the policy allows (``redirects.py``), read the last answer."""
        url, params, body = request.url, request.query or None, request.encoded_body()
        method = request.method
        for hops in range(redirects.MOST_REDIRECTS + 1):
            with self.session.request(method, url, params=params, data=body, headers=headers, timeout=self.timeout,
                                      allow_redirects=False, stream=True) as answer:
                location = answer.headers.get("Location")
                following = redirects.target(answer.url, answer.status_code, location, method)
                if following is None or hops == redirects.MOST_REDIRECTS:
                    if location and 300 <= answer.status_code < 400:   # not followed: its body is not read
                        text = redirects.refusal(answer.url, answer.status_code, location, method, hops)
                        return Response(answer.status_code, text, dict(answer.headers))
                    content, complete = _read(answer)
                    return Response(answer.status_code, _body(answer, content, complete), dict(answer.headers))
            url, params = following, None   # the Location is the whole URL, query included
            if answer.status_code not in redirects.KEEPING_METHOD:
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
        raise AssertionError("unreachable: the last hop returns")

    def _late(self, request: Request) -> TransportError:
        return TransportError(f"no answer within {self.timeout:g}s from {_masked_url(request)} (the deadline covers "
                              f"the whole request: connecting, sending, and the answer to its last byte)")


def check_sendable(request: Request) -> None:
    """RequestError naming the header when a header cannot go on the wire as the mapping made it.

    HTTP gives header values no character set (RFC 9110 5.5): a byte past ASCII reaches the vendor
    as whatever it guesses, and a character past Latin-1 cannot be written at all. So a header
    name or value holding anything but visible ASCII, space and tab is refused, naming the header
    and the character, rather than sent as bytes the vendor would misread. A mapping that must put
    such text in a header encodes it itself (``url_segment`` percent-encodes, as RFC 8187's
    ``name*=UTF-8''...`` parameters expect; ``base64``).
    """
    for name, value in request.headers.items():
        for part, text in (("name", name), ("value", value)):
            if not isinstance(text, str) or (text.isascii() and text.isprintable()):
                continue
            bad = next((ch for ch in text if not (" " <= ch <= "~" or (ch == "\t" and part == "value"))), None)
            if bad is not None:
                raise RequestError(f"header {name!r}: its {part} holds {bad!r} (U+{ord(bad):04X}), which HTTP "
                                   f"headers cannot carry: header {part}s must be ASCII; encode the text in the "
                                   f"mapping (url_segment or base64)", path=f"headers.{name}")


def _read(answer: requests.Response) -> tuple[bytes, bool]:
    """The body as sent (Content-Encoding undone), up to ANSWER_LIMIT; (bytes, complete)."""
    chunks, size = [], 0
    for chunk in answer.iter_content(CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > ANSWER_LIMIT:
            return b"".join(chunks)[:ANSWER_LIMIT], False
    return b"".join(chunks), True


class SavedResponses:
    """Answers requests from saved files, for offline mapping and reproducible tests.

    A GET reads ``DIR/<url path>.json``, another method ``DIR/<url path>.<method>.json``
    (``people/profile.post.json``): answered 200 with the file's JSON. A file named
    ``<url path>[.<method>].<status>.json`` (``profile/a@b.c.patch.404.json``) answers
    that status instead. Nothing saved is a 404, as a live API would say.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def send(self, request: Request) -> Response:
        relative = unquote(urlsplit(request.url).path).strip("/")
        name = relative if request.method == "GET" else f"{relative}.{request.method.lower()}"
        file = (self.folder / f"{name}.json").resolve()
        if self.folder.resolve() not in file.parents:
            return Response(404, {"errors": [{"code": "not found", "detail": f"no saved response {name}.json"}]})
        if file.is_file():
            return Response(200, json.loads(file.read_text(encoding="utf-8")))
        prefix = file.name[:-len(".json")] + "."
        if file.parent.is_dir():
            for other in sorted(file.parent.iterdir()):
                status = other.name[len(prefix):-len(".json")]
                if other.name.startswith(prefix) and other.name.endswith(".json") and status.isdigit() \
                        and len(status) == 3:
                    return Response(int(status), json.loads(other.read_text(encoding="utf-8") or "null"))
        return Response(404, {"errors": [{"code": "not found", "detail": f"no saved response {name}.json"}]})


@dataclass
class Delivery:
    """How sending one request ended: delivered, or failed (retryable or not) after some attempts."""

    request: Request
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    retryable: bool = False


def deliver(client, request: Request, attempts: int = 4, backoff: float = 0.5, max_wait: float = 30.0,
            sleep=time.sleep) -> Delivery:
    """Send with retries on 408/423/429/5xx and transport errors, honouring Retry-After."""
    last = Delivery(request, False, 0)
    for attempt in range(1, attempts + 1):
        try:
            response = client.send(request)
        except RequestError as exc:
            last = Delivery(request, False, attempt, None, str(exc), not exc.final)
            if exc.final:
                return last
            wait = backoff * 2 ** (attempt - 1)
        except TransportError as exc:
            last = Delivery(request, False, attempt, None, str(exc), True)
            wait = backoff * 2 ** (attempt - 1)
        else:
            if 200 <= response.status < 300:
                return Delivery(request, True, attempt, response.status)
            retryable = is_retryable(response.status)
            last = Delivery(request, False, attempt, response.status,
                            f"{request.destination} answered {response.status}: {summarize(response.body, request)}", retryable)
            if not retryable:
                return last
            asked = retry_after(response.headers)
            wait = asked if asked is not None else backoff * 2 ** (attempt - 1)
        if attempt < attempts:
            sleep(min(wait, max_wait))
    return last


def read_environment_once(session: requests.Session) -> None:
    """Proxies and CA bundle from the environment, read now rather than on every request.

    requests re-reads os.environ for each call when ``trust_env`` is on, which
    costs more than the rest of a local request. With a proxy configured we
    leave requests in charge, because NO_PROXY is matched per URL.
    """
    if not session.trust_env or urllib.request.getproxies():
        return
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def _body(answer: requests.Response, content: bytes, complete: bool):
    """What a step or summary reads of an answer, always something the store can hold."""
    if not complete:
        return Excerpt.of(_text(answer, content[:4 * EXCERPT]))
    if "json" in answer.headers.get("Content-Type", ""):
        try:
            body = jsoncodec.loads(content)
        except ValueError:
            pass
        else:   # JSON may hold what no store keeps (a lone surrogate, NaN): replaced, as intake does
            return storable.safe_copy(body) if storable.problems(body) else body
    return _text(answer, content)


def _text(answer: requests.Response, content: bytes) -> str:
    # no charset guessing: vendors answer UTF-8, and the text is only shown in errors
    try:
        return content.decode(answer.encoding or "utf-8", "replace")
    except LookupError:   # a charset Python does not know
        return content.decode("utf-8", "replace")


def _masked_url(request: Request) -> str:
    """The URL as the request shows it (masked by provenance), for transport errors."""
    return request.to_dict()["url"]
