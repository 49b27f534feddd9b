"""The collector as analytics.js's CDN and API host: its settings document, CORS, and the client's address.

analytics.js (``@segment/analytics-next``) starts by fetching
``{cdnURL}/v1/projects/{writeKey}/settings`` and then posts each call as
``text/plain`` JSON to ``{protocol}://{apiHost}/t`` (``/i``, ``/p``...). The page
runs on another origin, so every one of those is a CORS request: the browser
asks first (``OPTIONS``, with no write key) and hides any answer that does not
name the page's origin in ``Access-Control-Allow-Origin``.

The rules, decided once here:

- a preflight carries no write key, so it is allowed when *any* SDK source
  allows the origin (a source with no ``allowed_origins`` allows every origin);
- the request itself carries a key: a source with ``allowed_origins`` refuses
  other origins (403 ``origin_not_allowed``, nothing stored, no
  ``Access-Control-Allow-Origin``). Requests with no ``Origin`` header (server
  SDKs, curl) are not browser requests and are not checked;
- ``context.ip`` is the peer's address; ``X-Forwarded-For`` (and, for the
  settings document, ``X-Forwarded-Proto`` / ``X-Forwarded-Host``) count only
  when the peer is one of ``server.trusted_proxies``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .segment_api import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_METHODS = "GET, POST, OPTIONS"
# analytics.js sends Content-Type (text/plain) and Authorization (Basic, the write key), X-Retry-Count on retries
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Retry-Count"
MAX_AGE = "7200"                 # seconds a browser may reuse a preflight (Chromium's cap)
EXPOSE_HEADERS = "Retry-After"   # not CORS-safelisted: without this the SDK cannot read it on a 429
SETTINGS_CACHE = "public, max-age=300"
BUNDLE_CACHE = "public, max-age=31536000, immutable"   # chunk names carry a content hash
SCRIPT = "text/javascript; charset=utf-8"
STANDALONE = "standalone.js"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class OriginRefused(ApiError):
    """The write key's source does not allow the page's origin: answered without CORS headers."""

    def __init__(self, origin: str, source: str):
        super().__init__(403, "origin_not_allowed",
                         f"the origin {origin} is not in allowed_origins of the source '{source}'")


@dataclass(frozen=True)
class PublicUrl:
    """How browsers reach the collector: ``protocol`` and ``host[:port][/prefix]``."""

    protocol: str
    host: str

    @property
    def api_host(self) -> str:
        return f"{self.host}/v1"


def parse_public_url(text: str) -> PublicUrl:
    """``https://collector.example[:port][/prefix]``; raises ValueError saying what was expected."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL such as https://collector.example, got {text!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"expected scheme://host[:port][/path] with no query, fragment or credentials, got {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {text!r} is not a number from 0 to 65535") from None
    host = _netloc(parts.scheme, parts.hostname, port)
    path = parts.path.rstrip("/")
    return PublicUrl(parts.scheme, host + path)


def parse_origin(text: str) -> str:
    """An origin as browsers send it (``scheme://host[:port]``, default port left out); raises ValueError."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an origin such as https://shop.example, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"an origin is scheme://host[:port] only (no path, query or credentials), got {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {text!r} is not a number from 0 to 65535") from None
    return f"{parts.scheme}://{_netloc(parts.scheme, parts.hostname, port)}"


def parse_network(text: str) -> Network:
    """``10.0.0.0/8``, ``127.0.0.1`` or ``::1``; raises ValueError."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ValueError(f"expected an IP address or CIDR range such as 10.0.0.0/8, got {text!r}") from None


def _netloc(scheme: str, hostname: str, port: int | None) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname.lower()
    return host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


class Bundles:
    """analytics.js itself, served as Segment's CDN serves it: the files of the folder ``server.analytics_js``
    names (``@segment/analytics-next``'s ``dist/umd``), read once at start. Only those names are served."""

    def __init__(self, folder: Path):
        if not folder.is_dir():
            raise ValueError(f"no such folder: {folder} (expected @segment/analytics-next's dist/umd folder)")
        self.folder = folder
        self.files = {path.name: path.read_bytes() for path in folder.glob("*.js") if path.is_file()}
        if STANDALONE not in self.files:
            raise ValueError(f"{folder} has no {STANDALONE} (expected @segment/analytics-next's dist/umd folder)")

    def standalone(self) -> bytes:
        return self.files[STANDALONE]

    def chunk(self, name: str) -> bytes | None:
        return self.files.get(name)

    def __repr__(self) -> str:
        return f"Bundles({str(self.folder)!r}, {len(self.files)} files)"


@dataclass
class BrowserPolicy:
    """What the configuration says about browsers: allowed origins, public URLs, trusted proxies."""

    origins: dict[str, frozenset[str] | None] = field(default_factory=dict)  # per SDK source; None: any
    public_urls: dict[str, PublicUrl] = field(default_factory=dict)         # per SDK source
    public_url: PublicUrl | None = None
    trusted_proxies: tuple[Network, ...] = ()
    any_origin: bool = False                                                 # the no-configuration demo
    bundles: Bundles | None = None                                           # server.analytics_js

    # --- CORS
    def allows(self, origin: str, source: str | None = None) -> bool:
        """Whether ``source`` (or, for a preflight with no key, any source) takes calls from ``origin``."""
        if self.any_origin:
            return True
        wanted = _normalised(origin)
        lists = [self.origins.get(source)] if source is not None else list(self.origins.values())
        return any(allowed is None or wanted in allowed for allowed in lists)

    def check(self, environ, source: str) -> None:
        """Refuse a browser call whose key belongs to a source that does not allow the page's origin."""
        origin = environ.get("HTTP_ORIGIN")
        if origin and not self.allows(origin, source):
            raise OriginRefused(origin, source)

    def cors_headers(self, environ) -> list[tuple[str, str]]:
        """Headers for any answer on a browser-facing path: the origin echoed only when some source allows it."""
        origin = environ.get("HTTP_ORIGIN")
        if not origin or not self.allows(origin):
            return [("Vary", "Origin")]
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS)]

    @staticmethod
    def preflight_headers() -> list[tuple[str, str]]:
        return [("Access-Control-Allow-Methods", ALLOW_METHODS), ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", MAX_AGE), ("Allow", ALLOW_METHODS)]

    # --- the settings document
    def settings(self, write_key: str, source: str, environ) -> dict:
        """The document analytics.js loads at start, pointing its API host (and its metrics) at us."""
        public = self.public_urls.get(source) or self.public_url or self._reached_as(environ)
        segment_io = {"apiKey": write_key, "apiHost": public.api_host, "protocol": public.protocol,
                      "unbundledIntegrations": [], "addBundledMetadata": True, "maybeBundledConfigIds": {},
                      "versionSettings": {"componentTypes": ["browser"]}}
        return {
            "integrations": {"Segment.io": segment_io},   # only Segment.io: no vendor script is loaded in the page
            "plan": {"track": {"__default": {"enabled": True, "integrations": {}}},
                     "identify": {"__default": {"enabled": True}}, "group": {"__default": {"enabled": True}}},
            "edgeFunction": {},
            "analyticsNextEnabled": True,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0, "host": public.api_host},   # the SDK's own telemetry: off, and never to Segment
            "legacyVideoPluginsEnabled": False,
            "remotePlugins": [],
        }

    def scheme(self, environ) -> str:
        """How the client reached us: the connection's scheme, or what a trusted proxy says in X-Forwarded-Proto."""
        scheme = environ.get("wsgi.url_scheme", "http")
        if self._from_trusted_proxy(environ):
            scheme = _first(environ.get("HTTP_X_FORWARDED_PROTO")).lower() or scheme
        return scheme

    def _reached_as(self, environ) -> PublicUrl:
        scheme = self.scheme(environ)
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
        if self._from_trusted_proxy(environ):
            host = _first(environ.get("HTTP_X_FORWARDED_HOST")) or host
        if scheme not in _DEFAULT_PORTS or not _HOST.match(host):
            raise ApiError(400, "invalid_host", "the Host (or trusted X-Forwarded-Host/-Proto) header is not a "
                                                "host[:port]; set server.public_url in the configuration file")
        return PublicUrl(scheme, host)

    # --- the client's address
    def client_ip(self, environ) -> str | None:
        """The peer's address, or the last address before the trusted proxies in X-Forwarded-For."""
        peer = _address(environ.get("REMOTE_ADDR"))
        if peer is None:
            return None
        client = peer
        if self._trusted(peer):
            for hop in reversed((environ.get("HTTP_X_FORWARDED_FOR") or "").split(",")):
                address = _address(hop)
                if address is None:
                    break                    # garbage: the last address a trusted proxy vouched for stands
                client = address
                if not self._trusted(address):
                    break
        return str(client)

    def _from_trusted_proxy(self, environ) -> bool:
        peer = _address(environ.get("REMOTE_ADDR"))
        return peer is not None and self._trusted(peer)

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)


def with_ip(event, ip: str | None):
    """The event with ``context.ip`` from the request when it brings none, as Segment does.

    A context that is not an object is left alone, for the schema check to name.
    """
    if ip is None or not isinstance(event, dict):
        return event
    context = event.get("context")
    if context is None:
        event["context"] = {"ip": ip}
    elif isinstance(context, dict) and not context.get("ip"):
        event["context"] = {**context, "ip": ip}
    return event


def _normalised(origin: str) -> str:
    try:
        return parse_origin(origin)
    except ValueError:
        return origin   # "null" and the like: matches no configured origin


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


def _address(text: str | None) -> Address | None:
    """An address from REMOTE_ADDR or one X-Forwarded-For entry (``[v6]:port`` and ``v4:port`` too)."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)   # ::ffff:10.0.0.1 from a dual-stack socket
    return mapped or address
