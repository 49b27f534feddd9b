"""A loaded source: vendor webhook payloads in, Segment events out.

The steps are declared in YAML and run here in a fixed order: recognise the
payload's type, run the handler's lookups (HTTP requests through one client,
or ready-made responses), map each output event, validate it against the
Segment schemas. Every payload ends in one SourceResult: events, skipped
(with the reason), rejected (with the errors) or failed (a lookup could not
be done; ``retryable`` says whether trying later may help). A lookup whose
request cannot be sent as built rejects the payload; one whose answer is over
the size limit the client reads fails it for good (the mapping reads every
answer, and an excerpt would map into wrong events).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import steps as stepping
from .answers import AnswerTooLarge, RequestError, whole
from .load.settings import SettingsSpec
from .map.language import MappingError, Node, Scope
from .problems import Problem
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
        data: dict[str, object] = {"source": self.source, "status": self.status, "webhookType": self.webhook_type,
                "deliveryId": self.delivery_id, "reason": self.reason,
                "errors": [e.as_dict() for e in self.errors], "events": self.events}
        if self.status == FAILED:
            data["retryable"] = self.retryable
        return data


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
    type_expression: Any
    id_expression: Any
    ignore: dict
    lookups: dict             # name -> steps.Step: lookups are steps that read answers as lookups.NAME
    handlers: dict


class BoundSource:
    """A source with its settings resolved: what callers use to process payloads."""

    def __init__(self, source: Source, settings: dict, secrets: frozenset, validator):
        self.source, self.settings, self.secrets, self.validator = source, settings, secrets, validator

    def process(self, payload, client=None, lookups: dict | None = None) -> SourceResult:
        """Map one webhook payload. ``lookups`` supplies ready-made responses by name (offline mapping)."""
        source, supplied = self.source, lookups or {}
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

        data: dict = {"payload": payload, "lookups": {}}
        variables: dict = {}

        def scope_for(answers: dict) -> Scope:
            data["lookups"] = {name: answer.body for name, answer in answers.items()}
            return Scope(data, self.settings, dict(variables))

        context = stepping.Context(scope_for, "lookup", "lookups", source.name, (), self.secrets)
        known = {name: stepping.Answer(200, body) for name, body in supplied.items()}
        try:
            scope = Scope(data, self.settings, variables)
            for name, node in source.vars:
                scope.set_var(name, node.evaluate(scope))
            done = stepping.run(source.lookups, handler.lookups, context,
                                _reading_whole(client.send) if client is not None else None, known)
            if done.end != stepping.DONE:
                return self._stopped(done, result)
            scope = scope_for(done.answers)
            events = [node.evaluate(scope) for node in handler.events]
        except MappingError as exc:
            return result(REJECTED, errors=[Problem(".".join(map(str, exc.path)), exc.message)])
        except RequestError as exc:
            if not exc.final:
                return result(FAILED, retryable=True, reason=exc.message)
            return result(REJECTED, reason="a lookup's request cannot be sent as built",
                          errors=[Problem(exc.path, exc.message)])
        except AnswerTooLarge as exc:
            return result(FAILED, retryable=False, reason=str(exc))
        errors = [Problem(f"events[{i}].{p.path}" if p.path else f"events[{i}]", p.message)
                  for i, event in enumerate(events) for p in self.validator.check(event)]
        if errors:
            return result(REJECTED, errors=errors, reason="the mapped events do not follow the Segment spec")
        return result(EVENTS, events=events)

    @staticmethod
    def _stopped(done: stepping.Run, result) -> SourceResult:
        """A lookup ended the payload early: what the source reports for each way a run ends."""
        if done.end == stepping.SKIP:
            return result(SKIPPED, reason=done.reason)
        if done.end == stepping.REJECT:
            return result(REJECTED, errors=done.errors)
        return result(FAILED, retryable=done.end == stepping.RETRY, reason=done.reason)

    def _result(self, status, **fields) -> SourceResult:
        return SourceResult(self.source.name, status, **fields)


def _reading_whole(send):
    """``send`` for lookups: the source's mapping reads every 2xx answer, so one the client cut at the size
    limit (an ``Excerpt``) fails the lookup instead."""
    def lookup(request):
        response = send(request)
        if 200 <= response.status < 300:
            whole(response.body, f"lookup '{request.action.partition(' ')[2] or request.action}'")
        return response
    return lookup
