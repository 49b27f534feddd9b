"""A compiled action (what one call type becomes) and the envelope around items."""
from __future__ import annotations

from typing import Any

import jmespath

from ..map.language import Literal, MappingError, Node, Scope, find_node, is_empty, is_truthy, plain_steps, split_or
from ..problems import Problem
from .endpoint import Endpoint

BOUND_ROUTES = 1024  # routes per action whose per-route constants are kept


class Required:
    """One entry of an action's ``required`` list: an output field that must not be empty.

    ``a || b`` means "one of": alternatives tried in order under the one emptiness
    rule (runtime.is_empty), so ``false`` and ``0`` count as present.
    """

    __slots__ = ("path", "alternatives", "message", "fields")

    def __init__(self, path: str, message: Node | None = None, expression: str | None = None):
        """``path`` as written (for messages); ``expression`` the JMESPath it means (``properties."$set"``
        for ``properties.$set``), by default the path itself; ``message`` a compiled value (a template)."""
        self.path = path
        expression = expression or path
        self.alternatives = [jmespath.parser.ParsedResult(expression, part)
                             for part in split_or(jmespath.compile(expression).parsed)]
        self.message = message
        # the keys of a plain path, quoted keys unquoted (for the default message); "a || b" as written
        single = plain_steps(self.alternatives[0].parsed) if len(self.alternatives) == 1 else None
        self.fields = single or path.split(".")

    def text(self, scope: Scope) -> str | None:
        """The message for this event (a template reads the event, settings and vars); None: the default."""
        if self.message is None:
            return None
        value = self.message.evaluate(scope)
        return "" if value is None else str(value)

    @property
    def written(self) -> str | None:
        """The message as the mapping writes it (a template's source), for pages that describe every event."""
        if self.message is None:
            return None
        return self.message.value if isinstance(self.message, Literal) else getattr(self.message, "source",
                                                                                  self.message.describe())

    def missing(self, payload, vars: dict) -> bool:
        data = {"vars": vars} if self.path.startswith("vars.") else payload
        return all(is_empty(expression.search(data)) for expression in self.alternatives)


CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")


class Subscription:
    """Which events of its call type a named action takes: event names (written in the file, or read from
    one setting), a JMESPath condition over the event and settings, or both.

    Names read from a setting are worked out once per route: kept per settings object, as ``Action.bound``
    keeps its code, so choosing an action costs a set lookup per event.
    """

    __slots__ = ("events", "when", "events_text", "when_text", "setting", "where", "_names")

    def __init__(self, events: frozenset | None, when, events_text, when_text, setting: str | None = None,
                 where: tuple = ()):
        self.events, self.when, self.events_text, self.when_text = events, when, events_text, when_text
        self.setting = setting   # events: {"@path": settings.NAME}: the names are that setting's list
        self.where = where       # ("actions", NAME): where a failing condition is reported
        self._names: dict = {}

    def names(self, settings: dict) -> frozenset | None:
        """The event names this action takes for a route's settings (None: any name)."""
        if self.setting is None:
            return self.events
        entry = self._names.get(id(settings))
        if entry is not None and entry[0] is settings:
            return entry[1]
        if len(self._names) >= BOUND_ROUTES:
            self._names.clear()
        names = frozenset(settings.get(self.setting) or ())   # a list of text: the setting's schema says so
        self._names[id(settings)] = (settings, names)
        return names

    def matches(self, event: dict, settings: dict) -> bool:
        """Does this action take ``event``? A condition that cannot be evaluated on this event's data
        (``contains()`` of a missing field) raises MappingError: that event's own failure."""
        names = self.events if self.setting is None else self.names(settings)
        if names is not None:
            label = event.get("event") if event.get("type") == "track" else event.get("name")
            if label not in names:
                return False
        if self.when is None:
            return True
        try:
            return is_truthy(self.when.search({"event": event, "settings": settings}))
        except Exception as exc:  # noqa: BLE001  jmespath raises its own errors and Python's TypeError
            raise MappingError(self.where + ("when",), f"when {self.when_text}: cannot be evaluated on this "
                                                        f"event: {type(exc).__name__}: {exc}") from None

    def describe(self) -> str:
        parts = []
        if self.setting is not None:
            parts.append(f"events named in settings.{self.setting}")
        elif self.events_text is not None:
            parts.append("events " + ", ".join(repr(e) for e in self.events_text))
        if self.when_text is not None:
            parts.append(f"when {self.when_text}")
        return " and ".join(parts)


class Action:
    """One action: the call type it takes, its name (the call type, or a named action's key), and its mapping:
    one request, or several named steps (engine/steps.py)."""

    __slots__ = ("call_type", "vars", "body", "required", "endpoint", "batched", "name", "subscription",
                 "steps", "sequence", "ahead", "envelope", "_plan", "_plans", "_compiled", "_bound", "_messages")

    def __init__(self, call_type: str, vars: list, body: Node, required: list, endpoint: Endpoint, batched: bool,
                 name: str | None = None, subscription: Subscription | None = None, steps: dict | None = None,
                 envelope: Envelope | bool | None = None):
        self.call_type, self.vars, self.body = call_type, vars, body
        self.required, self.endpoint, self.batched = required, endpoint, batched
        self.name = name or call_type
        self.subscription = subscription
        # None: the destination's envelope wraps this action's body; False: none; an Envelope: its own
        self.envelope = envelope
        # several named requests (engine/steps.py) instead of one: never batched
        self.steps = steps
        self.sequence = [step_name for step_name, step in steps.items() if not step.fallback] if steps else []
        self.ahead: list[str] | None = None   # the steps sure to run (steps.ahead), set by the loader
        self._plan = [step.plan() for step in steps.values()] if steps else []   # for offline views, worded once
        self._plans: dict[tuple, list] = {}   # the plan per set of steps shown (few: the steps sure to run)
        self._compiled: Any = None   # CompiledAction, made on first use
        self._bound: dict = {}
        self._messages: dict = {}  # (rule path, label) -> the default message, worded once

    def plan(self, shown: tuple[str, ...]) -> list[dict]:
        """What each step does, with the steps whose requests are shown marked ``sent: requests[i]``;
        worded once per set of steps shown (callers do not change it)."""
        plan = self._plans.get(shown)
        if plan is None:
            position = {name: i for i, name in enumerate(shown)}
            plan = [{**entry, "sent": f"requests[{position[entry['step']]}]"} if entry["step"] in position else entry
                    for entry in self._plan]
            if len(self._plans) < BOUND_ROUTES:
                self._plans[shown] = plan
        return plan

    def compiled(self, envelope, label: str):
        """The action as generated Python, written on first use so loading many files stays fast."""
        if self._compiled is None:
            from .compiled import CompiledAction
            self._compiled = CompiledAction(self, envelope, label)
        return self._compiled

    def bound(self, settings: dict, envelope, destination: str):
        """The compiled action for one route's settings (None: use the interpreter), kept per settings object.

        Keyed by the settings dict's identity, which the cache keeps alive so the id cannot be reused;
        bounded, since ``Engine.render(event, "name", settings)`` makes a new route per call.
        """
        entry = self._bound.get(id(settings))
        if entry is not None and entry[0] is settings:
            return entry[1]
        if len(self._bound) >= BOUND_ROUTES:
            self._bound.clear()
        bound = self.compiled(envelope, f"{destination} {self.name}").bind(settings)
        self._bound[id(settings)] = (settings, bound)
        return bound

    def payload(self, event: dict, settings: dict) -> tuple[object, Scope]:
        """Evaluate vars then body; raises MappingError on data a filter cannot take."""
        scope = Scope(event, settings, {})
        for name, node in self.vars:
            scope.set_var(name, node.evaluate(scope))
        return self.body.evaluate(scope), scope

    def missing_required(self, payload, scope: Scope, label: str) -> list[Problem]:
        return [self.required_problem(rule, label, lambda: scope)
                for rule in self.required if rule.missing(payload, scope.vars)]

    def required_problem(self, rule: Required, label: str, scope) -> Problem:
        """The error for one missing required field. A default or literal message depends only on the rule
        and the label (worded once); a template message is rendered with ``scope()`` (made only then)."""
        if rule.message is not None and type(rule.message) is not Literal:
            return Problem(rule.path, rule.text(scope()) or self._default_message(rule, label))
        problem = self._messages.get((rule.path, label))
        if problem is None:
            message = rule.message.value if rule.message is not None else None
            problem = Problem(rule.path, str(message) if message not in (None, "") else self._default_message(rule, label))
            if len(self._messages) < BOUND_ROUTES:
                self._messages[(rule.path, label)] = problem
        return problem

    def _default_message(self, rule: Required, label: str) -> str:
        source = ""
        if rule.fields[0] != "vars":
            node = find_node(self.body, tuple(rule.fields))
            if node is not None:
                source = f" (mapped from {node.describe()})"
        else:
            node = dict(self.vars).get(rule.fields[1]) if len(rule.fields) > 1 else None
            if node is not None:
                source = f" (from {node.describe()})"
        return f"{label}: '{rule.fields[-1]}' is required but missing or empty{source}"


class Envelope:
    """Wraps a list of mapped items into the body the vendor wants (arrays, signatures)."""

    __slots__ = ("vars", "body")

    def __init__(self, vars: list, body: Node):
        self.vars, self.body = vars, body

    def wrap(self, items: list, settings: dict):
        scope = Scope({"items": items}, settings, {})
        for name, node in self.vars:
            scope.set_var(name, node.evaluate(scope))
        return self.body.evaluate(scope)


class Batching:
    """How a destination combines events; ``unbatchable`` says why it cannot (its batch request would
    read one event), and then every event goes out as its own request."""

    __slots__ = ("max_events", "max_bytes", "endpoint", "envelope", "unbatchable")

    def __init__(self, max_events: int, max_bytes: int | None, endpoint: Endpoint, envelope: Envelope | None,
                 unbatchable: str | None = None):
        self.max_events, self.max_bytes, self.endpoint, self.envelope = max_events, max_bytes, endpoint, envelope
        self.unbatchable = unbatchable

