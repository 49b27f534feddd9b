"""An action compiled to Python (map/codegen.py) and bound to one route's settings.

Why: settings are fixed per route, so whatever depends on them alone (base
URLs, credentials, auth headers) is computed once per route here instead of
once per event; the rest runs as generated Python. The interpreter
(``Action.payload``, ``Endpoint.build``) stays the reference: a route whose
settings make a constant fail (the interpreter would fail on every event)
is simply left to it.
"""
from __future__ import annotations

from ..map.codegen import generate, generate_values, is_static, or_of_plain_paths
from ..map.language import MappingError, Scope, is_empty


class CompiledAction:
    """The generated functions of one action (and the envelope around its items)."""

    def __init__(self, action, envelope, label: str):
        self.action = action
        self.map = generate(f"map_{action.call_type}", f"{label}: vars, then body, for one event",
                            action.vars, action.body)
        self.wrap = (generate("wrap_items", f"{label}: the envelope around the mapped items",
                              envelope.vars, envelope.body) if envelope is not None else None)
        nodes = action.endpoint.nodes()
        static = [is_static(node) for node in nodes]
        self.static_endpoint = all(static)
        # Segment's "/v1/{{ type }}": only the URL changes per event, the credentials do not
        self.only_url_varies = not self.static_endpoint and all(static[1:])
        self.endpoint = (None if self.static_endpoint else
                         generate_values(f"request_{action.call_type}",
                                         f"{label}: the URL" if self.only_url_varies else f"{label}: URL, headers and query",
                                         nodes[:1] if self.only_url_varies else nodes))
        self.required = [RequiredCheck(rule) for rule in action.required]

    def source(self) -> str:
        """The generated Python, for ``eventmap explain --code``."""
        parts = [self.map.source]
        if self.endpoint is not None:
            parts.append(self.endpoint.source)
        if self.wrap is not None:
            parts.append(self.wrap.source)
        return "\n".join(parts)

    def bind(self, settings: dict) -> "BoundAction | None":
        """This action for one route; None when a settings-only value fails (the interpreter then reports it)."""
        try:
            return BoundAction(self, settings)
        except MappingError:
            return None


class BoundAction:
    __slots__ = ("compiled", "settings", "map", "constants", "wrap", "wrap_constants", "endpoint",
                 "endpoint_constants", "parts", "parts_error", "headers_and_query", "required")

    def __init__(self, compiled: CompiledAction, settings: dict):
        self.compiled, self.settings = compiled, settings
        self.map, self.constants = compiled.map.function, compiled.map.constants(settings)
        self.wrap = self.wrap_constants = None
        if compiled.wrap is not None:
            self.wrap, self.wrap_constants = compiled.wrap.function, compiled.wrap.constants(settings)
        self.required = compiled.required
        endpoint = compiled.action.endpoint
        self.parts = self.parts_error = self.endpoint = self.endpoint_constants = self.headers_and_query = None
        if compiled.static_endpoint:
            try:  # the same URL, headers and query for every event of this route
                self.parts = endpoint.parts(Scope({}, settings, {}))
            except MappingError as exc:
                self.parts_error = exc  # raised per event, where the interpreter raises it
            return
        self.endpoint, self.endpoint_constants = compiled.endpoint.function, compiled.endpoint.constants(settings)
        if compiled.only_url_varies:
            scope = Scope({}, settings, {})
            try:
                self.headers_and_query = endpoint.headers_and_query(node.evaluate(scope) for node in endpoint.nodes()[1:])
            except MappingError as exc:
                self.parts_error = exc  # raised per event once the URL is known to be good, as the interpreter does

    def payload(self, event: dict) -> tuple[object, dict]:
        """(mapped body, vars); raises MappingError on data a filter cannot take."""
        return self.map(event, self.settings, self.constants)

    def missing(self, payload, vars: dict, label: str) -> list:
        """A Problem per required field that is missing or empty."""
        return [self.compiled.action.required_problem(check.rule, label)
                for check in self.required if check.missing(payload, vars)]

    def envelope(self, items: list):
        return self.wrap({"items": items}, self.settings, self.wrap_constants)[0]

    def request_parts(self, event: dict, vars: dict) -> tuple[str, dict, dict]:
        if self.parts is not None:
            return self.parts
        if self.parts_error is not None and self.endpoint is None:
            raise self.parts_error
        endpoint = self.compiled.action.endpoint
        try:
            values = self.endpoint(event, self.settings, self.endpoint_constants, vars)
        except MappingError:
            # the interpreter checks the URL before it evaluates the headers: let it say which error comes first
            return endpoint.parts(Scope(event, self.settings, vars))
        if not self.compiled.only_url_varies:
            return endpoint.assemble(iter(values))
        url = endpoint.checked_url(values[0])
        if self.parts_error is not None:
            raise self.parts_error
        return (url, *self.headers_and_query)


class RequiredCheck:
    """``Required.missing`` as dict reads when the rule is a plain path or ``a || b``."""

    __slots__ = ("rule", "alternatives", "on_vars")

    def __init__(self, rule):
        self.rule = rule
        self.alternatives = or_of_plain_paths(rule.expression.parsed)
        self.on_vars = rule.path.startswith("vars.")

    def missing(self, payload, vars: dict) -> bool:
        if self.alternatives is None:
            return self.rule.missing(payload, vars)
        root = {"vars": vars} if self.on_vars else payload
        value = None
        for steps in self.alternatives:
            value = root
            for key in steps:
                value = value.get(key) if isinstance(value, dict) else None
            if not _jmespath_false(value):
                break
        return is_empty(value)


def _jmespath_false(value) -> bool:
    """JMESPath's falsiness, as ``||`` applies it."""
    return value == "" or value == [] or value == {} or value is None or value is False
