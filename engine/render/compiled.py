"""An action compiled to Python (map/codegen.py) and bound to one route's settings.

Why: settings are fixed per route, so whatever depends on them alone (base
URLs, credentials, auth headers) is computed once per route here instead of
once per event; the rest runs as generated Python. A route whose settings
make a constant fail is left to the per-node path (``Action.payload``,
``Endpoint.build``), which runs the same generated code node by node and so
reports the same error, in the same order, for every event.
"""
from __future__ import annotations

from typing import Any

from ..map.codegen import generate, generate_values
from ..map.language import MappingError, Scope, is_empty, plain_steps
from .request import Request


class CompiledAction:
    """The generated functions of one action (and the envelope around its items)."""

    def __init__(self, action, envelope, label: str):
        self.action = action
        self.map = generate(f"map_{action.name}", f"{label}: vars, then body, for one event",
                            action.vars, action.body)
        self.wrap = (generate("wrap_items", f"{label}: the envelope around the mapped items",
                              envelope.vars, envelope.body) if envelope is not None else None)
        nodes = action.endpoint.nodes()
        static = [node.static() for node in nodes]
        self.static_endpoint = all(static)
        # Segment's "/v1/{{ type }}": only the URL changes per event, the credentials do not
        self.only_url_varies = not self.static_endpoint and all(static[1:])
        self.endpoint = (None if self.static_endpoint else
                         generate_values(f"request_{action.name}",
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

    def bind(self, settings: dict) -> BoundAction | None:
        """This action for one route; None when a settings-only value fails (the interpreter then reports it)."""
        try:
            return BoundAction(self, settings)
        except MappingError:
            return None


class BoundAction:
    """One action for one route: its generated functions, their constants, and what is fixed per route."""

    __slots__ = ("compiled", "settings", "map", "constants", "wrap", "wrap_constants", "endpoint",
                 "endpoint_constants", "fixed", "fixed_error", "required")

    def __init__(self, compiled: CompiledAction, settings: dict):
        self.compiled, self.settings = compiled, settings
        self.map, self.constants = compiled.map.function, compiled.map.constants(settings)
        self.wrap: Any = None
        self.wrap_constants: Any = None
        if compiled.wrap is not None:
            self.wrap, self.wrap_constants = compiled.wrap.function, compiled.wrap.constants(settings)
        self.required = compiled.required
        self.endpoint: Any = None
        self.endpoint_constants: Any = None
        if compiled.endpoint is not None:   # None: nothing in the endpoint varies per event
            self.endpoint, self.endpoint_constants = compiled.endpoint.function, compiled.endpoint.constants(settings)
        # What is the same for every event of this route: (URL, or None where it varies, headers with
        # their Content-Type, query, method, format, action). None when headers vary per event, or when
        # making them failed: then fixed_error is raised per event, where the interpreter raises it.
        self.fixed: tuple | None = None
        self.fixed_error: MappingError | None = None
        endpoint = compiled.action.endpoint
        if compiled.static_endpoint or compiled.only_url_varies:
            scope, nodes = Scope({}, settings, {}), endpoint.nodes()
            try:  # in the interpreter's order, so the same error comes first
                url = endpoint.checked_url(nodes[0].evaluate(scope)) if compiled.static_endpoint else None
                headers, query, method = endpoint.headers_and_query(node.evaluate(scope) for node in nodes[1:])
            except MappingError as exc:
                self.fixed_error = exc
            else:
                self.fixed = (url, endpoint.with_content_type(headers, method), query, method, endpoint.format,
                              compiled.action.name)

    def payload(self, event: dict) -> tuple[object, dict]:
        """(mapped body, vars); raises MappingError on data a filter cannot take."""
        return self.map(event, self.settings, self.constants)

    def missing(self, payload, vars: dict, label: str, event: dict) -> list:
        """A Problem per required field that is missing or empty (a template message reads ``event``)."""
        return [self.compiled.action.required_problem(check.rule, label, lambda: Scope(event, self.settings, vars))
                for check in self.required if check.missing(payload, vars)]

    def envelope(self, items: list):
        return self.wrap({"items": items}, self.settings, self.wrap_constants)[0]

    def request(self, event: dict, vars: dict, body, destination: str, message_ids: tuple, secrets) -> Request:
        """What ``Endpoint.build`` makes for this event, with the parts fixed per route made once."""
        endpoint = self.compiled.action.endpoint
        if self.fixed is None:
            request = endpoint.finish(self._parts(event, vars), body, destination, self.compiled.action.name,
                                      message_ids, secrets)
        else:
            url, headers, query, method, format, call_type = self.fixed
            if url is None:  # only the URL varies (Segment's "/v1/{{ type }}")
                try:
                    url = endpoint.checked_url(self.endpoint(event, self.settings, self.endpoint_constants, vars)[0])
                except MappingError:
                    url = endpoint.parts(Scope(event, self.settings, vars))[0]  # the interpreter's own error first
            request = Request(destination, call_type, method, url, dict(headers), dict(query),
                              None if method == "GET" else body, format, message_ids, secrets)
        if endpoint.signed:
            endpoint.sign(request, self.settings, vars)
        return request

    def _parts(self, event: dict, vars: dict) -> tuple[str, dict, dict, str]:
        """URL, headers and query for one event whose headers vary, or whose route's fixed parts failed."""
        endpoint = self.compiled.action.endpoint
        if self.endpoint is None:  # nothing varies, and making it failed
            assert self.fixed_error is not None
            # the route's one error, raised for each event: without its last traceback, or every raise would
            # chain another event's frames (and all they hold) onto it
            raise self.fixed_error.with_traceback(None)
        try:
            values = self.endpoint(event, self.settings, self.endpoint_constants, vars)
        except MappingError:
            # the interpreter checks the URL before it evaluates the headers: let it say which error comes first
            return endpoint.parts(Scope(event, self.settings, vars))
        if self.fixed_error is not None:  # only the URL varies: a good URL, then the route's own error
            endpoint.checked_url(values[0])
            raise self.fixed_error.with_traceback(None)
        return endpoint.assemble(iter(values))


class RequiredCheck:
    """``Required.missing`` as dict reads when each alternative is a plain path."""

    __slots__ = ("rule", "alternatives", "on_vars")

    def __init__(self, rule):
        self.rule = rule
        paths = [plain_steps(expression.parsed) for expression in rule.alternatives]
        self.alternatives: list[list] | None = [steps for steps in paths if steps is not None]
        if len(self.alternatives) != len(paths):
            self.alternatives = None
        self.on_vars = rule.path.startswith("vars.")

    def missing(self, payload, vars: dict) -> bool:
        if self.alternatives is None:
            return self.rule.missing(payload, vars)
        root = {"vars": vars} if self.on_vars else payload
        for steps in self.alternatives:
            value = root
            for key in steps:
                value = value.get(key) if isinstance(value, dict) else None
            if not is_empty(value):
                return False
        return True
