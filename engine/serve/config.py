"""What ``eventmap serve`` reads from the configuration file: sources, server options, storage.

The file's schema (schemas/config.schema.json) checks shapes; the rules that
need more than a shape (a source is either an SDK source or a webhook, an
environment variable must be set) are checked here, and every problem points
at the file and line. Secrets are resolved once, here, and kept in ``Secret``
so that no repr, log line or error ever shows them.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..durations import parse_duration
from ..load.config import Config, load_config
from ..load.delivery_options import DeliveryOptions, StorageOptions
from ..load.yaml_source import YamlDocument, load_yaml
from ..logs import LogOptions
from ..problems import ConfigError, Problem
from .browser import BrowserPolicy, Bundles, parse_network, parse_origin, parse_public_url

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_WORKERS, DEFAULT_THREADS = "127.0.0.1", 8088, 2, 4
# With no configuration file: every shipped destination with made-up credentials,
# delivered by the dry-run sink (nothing leaves the machine).
DEMO_DESTINATIONS = {
    "planhat": {"settings": {"tenant_token": "dry-run-tenant-token"}},
    "richpanel": {"settings": {"api_key": "dry-run-key", "api_secret": "dry-run-secret"}},
    "crisp": {"settings": {"api_key": "dry-run:key", "website_id": "00000000-0000-4000-8000-000000000000"}},
    "segment": {"settings": {"write_key": "dry-run-write-key"}},
}
DEMO_FILE = "(built-in demo configuration)"


class Secret:
    """A credential: compared in constant time, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, offered: str | None) -> bool:
        # surrogatepass: a key that is not valid Unicode (a lone surrogate) simply does not match
        return offered is not None and hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), self._value.encode())

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass
class WebhookSource:
    """A vendor webhook posted to /sources/<name>, mapped by the source file ``mapping``."""

    name: str
    mapping: str
    settings: dict = field(repr=False)   # may hold the vendor's API token
    basic: tuple[Secret, Secret] | None = None
    headers: dict[str, Secret] = field(default_factory=dict)

    @property
    def pseudo_destination(self) -> str:
        return f"source:{self.name}"

    def secrets(self) -> list[str]:
        found = [h.reveal() for h in self.headers.values()]
        if self.basic:
            found += [s.reveal() for s in self.basic]
        return found


class WriteKeys:
    """Which SDK source a write key belongs to. ``any_key`` is the no-configuration demo mode."""

    def __init__(self, keys: dict[str, Secret], any_key: bool = False):
        self._keys, self.any_key = keys, any_key

    def source_for(self, offered: str | None) -> str | None:
        if not offered:
            return None
        if self.any_key:
            return "demo"
        found = None
        for name, key in self._keys.items():  # no early exit: the time taken says nothing about the keys
            if key.matches(offered):
                found = name
        return found

    def __bool__(self) -> bool:
        return self.any_key or bool(self._keys)

    def __repr__(self) -> str:
        return f"WriteKeys({sorted(self._keys)}, any_key={self.any_key})"

    def names(self) -> list[str]:
        return sorted(self._keys)

    def secrets(self) -> list[str]:
        return [k.reveal() for k in self._keys.values()]


@dataclass
class ConsoleLogin:
    """The console's HTTP Basic credentials (``console:`` in the file)."""

    username: Secret
    password: Secret

    def matches(self, offered: tuple[str, str] | None) -> bool:
        user, password = offered or (None, None)
        return self.username.matches(user) & self.password.matches(password)  # both compared, always

    def secrets(self) -> list[str]:
        """The password only: a username is not a secret, and masking it would garble event data ('admin-user')."""
        return [self.password.reveal()]


@dataclass
class ServerOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS     # store threads per server process
    queue_depth: int = 64              # requests per process that may wait for a store thread; more are answered 429
    retry_after: float = 2.0           # seconds, in the Retry-After of a 429
    header_timeout: float = 10.0       # a request's headers must arrive within this, from connect or the last answer
    body_timeout: float = 30.0         # a request's body must arrive within this, from its headers
    max_connections: int = 1000        # open connections per server process; more are answered 503 and closed
    intake: str = "validate"           # or "queue": store each request whole, fan out later (engine/serve/inbox.py)
    hosts: tuple[str, ...] = ()        # names answered for where no key is needed, beside IPs (engine/serve/hosts.py)
    inbox_max_requests: int = 100_000  # queue mode: requests the inbox may hold; more are answered 429 (inbox_limit.py)
    inbox_max_mb: int = 1024           # ... and megabytes of their bodies


SERVER_DURATIONS = ("retry_after", "header_timeout", "body_timeout")


@dataclass
class ServeConfig:
    """Everything the server and its background worker need, resolved and checked."""

    file: str
    folder: Path                  # relative storage paths and mappings are relative to this
    destinations: dict            # the ``destinations`` section, for routes_from_config
    mappings: Path | None
    write_keys: WriteKeys
    webhooks: dict[str, WebhookSource]
    server: ServerOptions
    storage: StorageOptions
    delivery: DeliveryOptions
    demo: bool = False            # no file: any write key, demo destinations, dry-run sink
    doc: YamlDocument | None = None  # the file's lines, to point later problems at them
    browser: BrowserPolicy = field(default_factory=BrowserPolicy)  # origins, public URL, trusted proxies
    logging: LogOptions = field(default_factory=LogOptions)
    console: ConsoleLogin | None = None  # None: no console, except in the demo (localhost, no login)
    plans: dict = field(default_factory=dict)   # SDK source name -> its SourcePlan (validate/plan.py)

    def __repr__(self) -> str:
        # destinations' settings may hold credentials written in the file: never shown
        return (f"ServeConfig(file={self.file!r}, destinations={sorted(self.destinations)}, "
                f"sources={self.write_keys.names() + sorted(self.webhooks)}, server={self.server}, demo={self.demo})")

    def located(self, problems: list[Problem]) -> list[Problem]:
        """Problems found after loading (settings, sources), given the line of the key they name."""
        if self.doc is None:
            return problems
        return [replace(p, file=self.file, line=self.doc.line_of(tuple(p.path.split(".")))) if p.line is None else p
                for p in problems]

    def sources_with_keys(self) -> list[str]:
        return self.write_keys.names()

    def config_dict(self) -> dict:
        return {"destinations": self.destinations}

    def secrets(self) -> list[str]:
        found = self.write_keys.secrets()
        for source in self.webhooks.values():
            found += source.secrets()
        if self.console:
            found += self.console.secrets()
        return found


def demo_config(folder: Path) -> ServeConfig:
    """``eventmap serve`` with no file: localhost, ./eventmap.db, any write key, dry-run delivery."""
    return ServeConfig(DEMO_FILE, folder, DEMO_DESTINATIONS, None, WriteKeys({}, any_key=True), {},
                       ServerOptions(), StorageOptions(), DeliveryOptions(), demo=True,
                       browser=BrowserPolicy(any_origin=True))


def load_serve_config(path: Path, environ=None) -> ServeConfig:
    """Read and check the file; raises ConfigError with every problem as file:line."""
    environ = os.environ if environ is None else environ
    config, problems = load_config(path)
    if config is None or problems:
        raise ConfigError(problems)
    doc, unread = load_yaml(path)
    if doc is None:   # read a moment ago by load_config: only a file changed in between gets here
        raise ConfigError(unread)
    problems = []
    keys, webhooks = {}, {}
    browser = _browser_server(config.data.get("server") or {}, config.folder, doc, problems)
    for name, spec in (config.data.get("sources") or {}).items():
        where = ("sources", name)
        if ("write_key" in spec) == ("webhook" in spec):
            problems.append(doc.problem(where, "a source has either write_key (a Segment SDK source) "
                                               "or webhook (a vendor webhook source), not both or neither"))
            continue
        if "write_key" in spec:
            for extra in ("settings", "auth"):
                if extra in spec:
                    problems.append(doc.problem(where + (extra,), f"'{extra}' belongs to webhook sources only"))
            _browser_source(name, spec, doc, browser, problems)
            key = _secret(spec["write_key"], doc, where + ("write_key",), environ, problems)
            if key is not None:
                keys[name] = key
            continue
        for extra in ("allowed_origins", "public_url"):
            if extra in spec:
                problems.append(doc.problem(where + (extra,), f"'{extra}' belongs to SDK sources (with write_key) only"))
        if "auth" not in spec:
            problems.append(doc.problem(where, "a webhook source needs auth: the credentials the vendor sends "
                                               "(basic: {username, password} or headers: {...})"))
            continue
        webhooks[name] = _webhook(name, spec, doc, environ, problems)
    _no_shared_keys(keys, doc, problems)
    server = _server(config, doc, problems)
    console = _console(config.data.get("console"), doc, environ, problems)
    if problems:
        raise ConfigError(problems)
    return ServeConfig(config.file, config.folder, config.data["destinations"], config.mappings,
                       WriteKeys(keys), webhooks, server, config.storage, config.delivery, doc=doc,
                       browser=browser, logging=config.logging, console=console, plans=config.plans)


def _browser_server(spec: dict, folder: Path, doc: YamlDocument, problems: list) -> BrowserPolicy:
    """server.public_url, server.trusted_proxies and server.analytics_js, each entry checked with its line."""
    browser = BrowserPolicy()
    if "analytics_js" in spec:
        browser.bundles = _parsed(Bundles, folder / spec["analytics_js"], doc, ("server", "analytics_js"), problems)
    if "public_url" in spec:
        browser.public_url = _parsed(parse_public_url, spec["public_url"], doc, ("server", "public_url"), problems)
    networks = [_parsed(parse_network, text, doc, ("server", "trusted_proxies", i), problems)
                for i, text in enumerate(spec.get("trusted_proxies") or [])]
    browser.trusted_proxies = tuple(n for n in networks if n is not None)
    return browser


def _browser_source(name: str, spec: dict, doc: YamlDocument, browser: BrowserPolicy, problems: list) -> None:
    """An SDK source's allowed_origins (none listed: any origin) and public_url."""
    where = ("sources", name)
    if "allowed_origins" in spec:
        origins = [_parsed(parse_origin, text, doc, where + ("allowed_origins", i), problems)
                   for i, text in enumerate(spec["allowed_origins"])]
        browser.origins[name] = frozenset(o for o in origins if o is not None)
    else:
        browser.origins[name] = None
    if "public_url" in spec:
        public = _parsed(parse_public_url, spec["public_url"], doc, where + ("public_url",), problems)
        if public is not None:
            browser.public_urls[name] = public


def _parsed(parse, text, doc: YamlDocument, path: tuple, problems: list):
    try:
        return parse(text)
    except ValueError as exc:
        problems.append(doc.problem(path, str(exc)))
        return None


def _console(spec: dict | None, doc: YamlDocument, environ, problems: list) -> ConsoleLogin | None:
    if spec is None:
        return None
    user = _secret(spec["username"], doc, ("console", "username"), environ, problems)
    password = _secret(spec["password"], doc, ("console", "password"), environ, problems)
    return ConsoleLogin(user, password) if user and password else None


def _webhook(name: str, spec: dict, doc: YamlDocument, environ, problems: list) -> WebhookSource:
    where = ("sources", name, "auth")
    auth = spec["auth"]
    basic = None
    if "basic" in auth:
        user = _secret(auth["basic"]["username"], doc, where + ("basic", "username"), environ, problems)
        password = _secret(auth["basic"]["password"], doc, where + ("basic", "password"), environ, problems)
        basic = (user, password) if user and password else None
    headers = {}
    for header, value in (auth.get("headers") or {}).items():
        secret = _secret(value, doc, where + ("headers", header), environ, problems)
        if secret is not None:
            headers[header] = secret
    return WebhookSource(name, spec["webhook"], dict(spec.get("settings") or {}), basic, headers)


def _secret(value, doc: YamlDocument, path: tuple, environ, problems: list) -> Secret | None:
    if isinstance(value, str):
        return Secret(value)
    variable = value["env"]
    if not environ.get(variable):
        problems.append(doc.problem(path, f"the environment variable {variable} is not set (or empty)"))
        return None
    return Secret(environ[variable])


def _no_shared_keys(keys: dict[str, Secret], doc: YamlDocument, problems: list) -> None:
    """Two sources with one write key could not be told apart."""
    seen: dict[str, str] = {}
    for name, key in keys.items():
        if key.reveal() in seen:
            problems.append(doc.problem(("sources", name, "write_key"),
                                        f"the same write key as source '{seen[key.reveal()]}'"))
        seen.setdefault(key.reveal(), name)


def _server(config: Config, doc: YamlDocument, problems: list) -> ServerOptions:
    spec = config.data.get("server") or {}
    values = {name: spec[name] for name in ServerOptions.__dataclass_fields__ if name in spec}
    for name in SERVER_DURATIONS:
        if name in values:
            try:
                values[name] = parse_duration(values[name])
            except ValueError as exc:
                problems.append(doc.problem(("server", name), str(exc)))
                del values[name]
                continue
            if values[name] <= 0 and name != "retry_after":
                problems.append(doc.problem(("server", name), "must be more than 0 (a read that may never end is "
                                                              "what this bounds)"))
    return ServerOptions(**values)
