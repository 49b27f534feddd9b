"""One HTTP client for everything eventmap sends, so tests can point it at localhost.

Lookups (a source enriching a webhook) and deliveries (a rendered request to a
vendor) both go through ``HttpClient.send``. ``SavedResponses`` answers the
same calls from files, for offline mapping and reproducible tests.
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

from ..answers import TransportError, is_retryable, retry_after, summarize
from ..render.request import Request

USER_AGENT = "eventmap/0.1 (+https://github.com/eventmap)"


@dataclass
class Response:
    status: int
    body: object = None          # parsed JSON when the answer is JSON, else text
    headers: dict = field(default_factory=dict)
    dry_run: bool = False        # the dry-run sink answered, not a vendor: nothing was sent


class HttpClient:
    def __init__(self, timeout: float = 10.0, session: requests.Session | None = None):
        self.timeout = timeout
        self.session = session or requests.Session()
        read_environment_once(self.session)

    def send(self, request: Request) -> Response:
        headers = {"User-Agent": USER_AGENT, **request.headers}
        try:
            answer = self.session.request(request.method, request.url, params=request.query or None,
                                          data=request.encoded_body(), headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise TransportError(f"no answer within {self.timeout:g}s from {_masked_url(request)}") from None
        except requests.RequestException as exc:
            raise TransportError(f"cannot reach {_masked_url(request)}: {type(exc).__name__}") from None
        return Response(answer.status_code, _body(answer), dict(answer.headers))


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


def _body(answer: requests.Response):
    if "json" in answer.headers.get("Content-Type", ""):
        try:
            return answer.json()
        except ValueError:
            pass
    # no charset guessing: vendors answer UTF-8, and the text is only shown in errors
    return answer.content.decode(answer.encoding or "utf-8", "replace")


def _masked_url(request: Request) -> str:
    """The URL as the request shows it (masked by provenance), for transport errors."""
    return request.to_dict()["url"]
