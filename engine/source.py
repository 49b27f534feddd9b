"""A loaded source: vendor webhook payloads in, Segment events out.

The steps are declared in YAML and run here in a fixed order: recognise the
payload's type, run the handler's lookups (HTTP requests through one client,
or ready-made responses), map each output event, validate it against the
Segment schemas. Every payload ends in one SourceResult: events, skipped
(with the reason), rejected (with the errors) or failed (a lookup could not
be done; ``retryable`` says whether trying later may help).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .deliver.http import TransportError, is_retryable
from .load.settings import SettingsSpec
from .map.language import MappingError, Node, Scope, is_empty, is_truthy
from .problems import Problem
from .render.endpoint import Endpoint
from .secrets import Masker
from .states import REJECTED, SKIPPED

EVENTS, FAILED = "events", "failed"   # with SKIPPED and REJECTED, what became of a webhook payload


@dataclass
class SourceResult:
    source: str
    status: str
    events: list = field(default_factory=list)
    reason: str | None = None
    errors: list[Problem] = field(default_factory=list)
    webhook_type: str | None = None
    delivery_id: str | None = None
    retryable: bool = False

    def to_dict(self) -> dict:
        data = {"source": self.source, "status": self.status, "webhookType": self.webhook_type,
                "deliveryId": self.delivery_id, "reason": self.reason,
                "errors": [e.as_dict() for e in self.errors], "events": self.events}
        if self.status == FAILED:
            data["retryable"] = self.retryable
        return data


@dataclass
class Lookup:
    name: str
    when: object | None       # compiled JMESPath or None
    endpoint: Endpoint
    on_status: dict           # status -> ("skip" | "reject" | "empty", message Node | None)
    requires: list = field(default_factory=list)  # (path, compiled JMESPath, message or None)


@dataclass
class Handler:
    lookups: list[str]
    events: list[Node]


@dataclass
class Source:
    name: str
    slug: str
    file: str
    settings: SettingsSpec
    vars: list
    type_expression: object
    id_expression: object
    ignore: dict
    lookups: dict
    handlers: dict


class _Stop(Exception):
    """Ends processing early with a finished result (skip, reject, fail)."""

    def __init__(self, result: SourceResult):
        self.result = result


class BoundSource:
    """A source with its settings resolved: what callers use to process payloads."""

    def __init__(self, source: Source, settings: dict, secrets: frozenset, validator):
        self.source, self.settings, self.secrets, self.validator = source, settings, secrets, validator

    def process(self, payload, client=None, lookups: dict | None = None) -> SourceResult:
        """Map one webhook payload. ``lookups`` supplies ready-made responses by name (offline mapping)."""
        try:
            return self._process(payload, client, lookups or {})
        except _Stop as stop:
            return stop.result

    def _process(self, payload, client, supplied) -> SourceResult:
        source = self.source
        if not isinstance(payload, dict):
            return self._result(REJECTED, errors=[Problem("", "expected a JSON object as the webhook payload")])
        kind = source.type_expression.search(payload)
        delivery_id = source.id_expression.search(payload)
        result = lambda status, **kw: self._result(status, webhook_type=kind, delivery_id=delivery_id, **kw)  # noqa: E731
        if kind in source.ignore:
            return result(SKIPPED, reason=source.ignore[kind])
        handler = source.handlers.get(kind)
        if handler is None:
            return result(SKIPPED, reason=f"webhook type {kind!r} is not handled by {source.name} "
                                         f"(handles: {', '.join(source.handlers)})")
        if delivery_id in (None, ""):
            return result(REJECTED, errors=[Problem("id", "the payload has no delivery id; message ids are derived from it")])

        data = {"payload": payload, "lookups": {}}
        scope = Scope(data, self.settings, {})
        try:
            for name, node in source.vars:
                scope.set_var(name, node.evaluate(scope))
            for name in handler.lookups:
                data["lookups"][name] = supplied[name] if name in supplied else self._lookup(name, scope, client, result)
            events = [node.evaluate(scope) for node in handler.events]
        except MappingError as exc:
            return result(REJECTED, errors=[Problem(".".join(map(str, exc.path)), exc.message)])
        errors = [Problem(f"events[{i}].{p.path}" if p.path else f"events[{i}]", p.message)
                  for i, event in enumerate(events) for p in self.validator.check(event)]
        if errors:
            return result(REJECTED, errors=errors, reason="the mapped events do not follow the Segment spec")
        return result(EVENTS, events=events)

    def _lookup(self, name: str, scope: Scope, client, result):
        lookup = self.source.lookups[name]
        if lookup.when is not None and not is_truthy(lookup.when.search(scope.event)):
            return None
        if lookup.requires:
            data = {**scope.event, "vars": scope.vars}
            missing = [Problem(path, message or f"'{path}' is required to look up {name}, but it is missing or empty")
                       for path, expression, message in lookup.requires if is_empty(expression.search(data))]
            if missing:
                raise _Stop(result(REJECTED, errors=missing))
        request = lookup.endpoint.build(scope, None, self.source.name, f"lookup {name}", (), self.secrets)
        shown = f"{request.method} {Masker(self.secrets).text(request.full_url())}"
        if client is None:
            raise _Stop(result(FAILED, reason=f"lookup '{name}' needs an HTTP client or a ready-made response"))
        try:
            response = client.send(request)
        except TransportError as exc:
            raise _Stop(result(FAILED, retryable=True, reason=f"lookup '{name}' failed: {exc}")) from None
        if 200 <= response.status < 300:
            return response.body
        if response.status in lookup.on_status:
            action, message = lookup.on_status[response.status]
            if action == "empty":
                return None
            text = message.evaluate(scope) if message is not None else f"lookup '{name}' answered {response.status}"
            if action == "skip":
                raise _Stop(result(SKIPPED, reason=text))
            raise _Stop(result(REJECTED, errors=[Problem(f"lookups.{name}", text)]))
        hint = " (check the source's credentials)" if response.status in (401, 403) else ""
        raise _Stop(result(FAILED, retryable=is_retryable(response.status),
                           reason=f"lookup '{name}' got HTTP {response.status} from {shown}{hint}"))

    def _result(self, status, **fields) -> SourceResult:
        return SourceResult(self.source.name, status, **fields)
