"""The mapping language: compile YAML values once, evaluate them per event.

A value in a mapping is one of:

* a literal: a number, boolean, null, or a string with no ``{{``;
* a Jinja2 template: any string containing ``{{`` or ``{%``; a string that is
  one ``{{ expression }}`` and nothing else keeps the expression's type;
* an object with plain keys: a nested object, each key mapped in turn; it may
  also carry ``@merge`` (copy the keys of another object first), ``@omit``
  (keys of the merge to leave out) and ``@drop_empty`` (drop "", [] and {});
* a list: each element mapped;
* a directive, an object whose keys all start with ``@``:
  ``@path`` (a JMESPath read, or a list of them tried in order until one is
  not empty), ``@literal``, ``@if``/``@then``/``@else``, ``@each``/``@map``,
  ``@function``/``@args``; any of them may add ``@filter`` and ``@default``.

Null results are always left out of objects. Everything that can be checked
without an event (expression syntax, filter and function names, settings
names) is checked here, at load time, and reported as Problems.
"""
from __future__ import annotations

import functools
import json
import re

import jmespath
from jinja2 import TemplateError
from jmespath.exceptions import JMESPathError

from ..problems import EventmapError
from .filters import FILTERS, FilterError
from .functions import FUNCTIONS
from .templates import WHOLE_EXPRESSION, Facts, environment, is_template, render_bounded

UNKNOWN_FILTER = re.compile(r"No filter named '([^']+)'")
SOURCES = ("@path", "@literal", "@if", "@each", "@function")
MODIFIERS = ("@filter", "@default")
COMPANIONS = {"@if": ("@then", "@else"), "@each": ("@map",), "@function": ("@args",)}
OBJECT_OPTIONS = ("@merge", "@omit", "@drop_empty")
DIRECTIVE_KEYS = frozenset(SOURCES + MODIFIERS + OBJECT_OPTIONS
                           + tuple(k for ks in COMPANIONS.values() for k in ks))
SOURCE_KEYS = frozenset(SOURCES)
ALLOWED_WITH = {source: frozenset(MODIFIERS + (source,) + COMPANIONS.get(source, ())) for source in SOURCES}


class MappingError(EventmapError):
    """A value could not be produced for this event (bad data, failing filter)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def is_empty(value) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0)


def is_truthy(value) -> bool:
    """JMESPath truthiness: only null, false and empty string/list/object are false."""
    return not (value is None or value is False or is_empty(value))


def describe_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


# --------------------------------------------------------------------------- scope

class Scope:
    """What one evaluation can see: the event, the settings, vars, and the current item."""

    __slots__ = ("event", "settings", "vars", "item", "in_item", "_jinja")

    def __init__(self, event, settings, vars=None, item=None, in_item=False):
        self.event = event
        self.settings = settings
        self.vars = vars if vars is not None else {}
        self.item = item
        self.in_item = in_item
        self._jinja = None

    @property
    def data(self):
        """What ``@path`` reads: the item inside ``@each``, the event elsewhere."""
        return self.item if self.in_item else self.event

    def for_item(self, item) -> Scope:
        return Scope(self.event, self.settings, self.vars, item, True)

    def jinja(self) -> dict:
        if self._jinja is None:
            names = dict(self.event) if isinstance(self.event, dict) else {}
            names.update(settings=self.settings, vars=self.vars)
            if self.in_item:
                names["item"] = self.item
            self._jinja = names
        return self._jinja

    def set_var(self, name, value) -> None:
        self.vars[name] = value
        self._jinja = None


# --------------------------------------------------------------------------- nodes

class Node:
    """A compiled value. ``where`` is its JSON path in the mapping file, for messages."""

    __slots__ = ("where",)

    def evaluate(self, scope: Scope):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, where, value):
        self.where, self.value = where, value

    def evaluate(self, scope):
        return self.value

    def describe(self):
        return json.dumps(self.value, ensure_ascii=False)


class Template(Node):
    """A Jinja2 template; compiled on first use (loading many files stays fast), then kept."""

    __slots__ = ("source", "whole", "_render")

    def __init__(self, where, source, whole):
        self.where, self.source, self.whole = where, source, whole
        self._render = None

    def evaluate(self, scope):
        return self.run(scope.jinja())

    def run(self, names: dict):
        """Render with these names (what Scope.jinja() builds); bad data raises MappingError."""
        if self._render is None:
            self._render = compiled_template(self.source, self.whole)
        try:
            return self._render(names)
        except FilterError as exc:
            raise MappingError(self.where, str(exc)) from None
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise MappingError(self.where, f"template {self.source!r} failed: {exc}") from None

    def describe(self):
        return f"template {self.source}"


@functools.lru_cache(maxsize=4096)
def parsed_template(source: str):
    """The Jinja2 syntax tree of a template (templates recur across files: parse each once)."""
    return environment().parse(source)


@functools.lru_cache(maxsize=4096)
def template_facts(source: str) -> Facts:
    return Facts(template_ast(source))


def template_ast(source: str):
    """The syntax tree of a template; for a whole ``{{ expression }}``, of that expression alone."""
    whole = WHOLE_EXPRESSION.match(source)
    return parsed_template("{{" + whole.group("expr") + "}}" if whole else source)


@functools.lru_cache(maxsize=4096)
def compiled_template(source: str, whole: bool):
    """A render function ``names -> value`` for a template; a whole ``{{ expression }}`` keeps its type."""
    env = environment()
    if whole:
        expression = env.compile_expression(WHOLE_EXPRESSION.match(source).group("expr"), undefined_to_none=True)
        return lambda names: expression(**names)
    return functools.partial(render_bounded, env.from_string(source))


class Path(Node):
    __slots__ = ("sources", "reads")

    def __init__(self, where, sources, reads):
        # reads: list of (text, compiled expression, reads_event_root)
        self.where, self.sources, self.reads = where, sources, reads

    def evaluate(self, scope):
        for _text, expression, from_root in self.reads:
            data = scope.event if from_root else scope.data
            value = expression.search(data)
            if not is_empty(value):
                return value
        return None

    def describe(self):
        return "path " + " | else ".join(self.sources)


class Condition(Node):
    __slots__ = ("source", "expression", "from_root", "then", "otherwise")

    def __init__(self, where, source, expression, from_root, then, otherwise):
        self.where, self.source, self.expression = where, source, expression
        self.from_root, self.then, self.otherwise = from_root, then, otherwise

    def evaluate(self, scope):
        data = scope.event if self.from_root else scope.data
        branch = self.then if is_truthy(self.expression.search(data)) else self.otherwise
        return branch.evaluate(scope) if branch is not None else None

    def describe(self):
        return f"if {self.source}"


class Each(Node):
    __slots__ = ("source", "mapper")

    def __init__(self, where, source, mapper):
        self.where, self.source, self.mapper = where, source, mapper

    def evaluate(self, scope):
        items = self.source.evaluate(scope)
        if items is None:
            return None
        if not isinstance(items, list):
            raise MappingError(self.where, f"@each expected a list, got {describe_type(items)}")
        mapped = (self.mapper.evaluate(scope.for_item(item)) for item in items)
        return [value for value in mapped if value is not None]

    def describe(self):
        return f"each item of {self.source.describe()}"


class Function(Node):
    __slots__ = ("name", "fn", "args")

    def __init__(self, where, name, fn, args):
        self.where, self.name, self.fn, self.args = where, name, fn, args

    def evaluate(self, scope):
        args = self.args.evaluate(scope) if self.args is not None else {}
        try:
            return self.fn(**(args or {}))
        except MappingError:
            raise
        except Exception as exc:  # a user's function must not crash the run
            raise MappingError(self.where, f"function '{self.name}' failed: {exc}") from None

    def describe(self):
        return f"function {self.name}"


class Modified(Node):
    """Filters, then a default, applied to another node's value."""

    __slots__ = ("inner", "filters", "default")

    def __init__(self, where, inner, filters, default):
        self.where, self.inner, self.filters, self.default = where, inner, filters, default

    def evaluate(self, scope):
        value = self.inner.evaluate(scope)
        for name, fn, args in self.filters:  # built-in filters pass None through; `default` replaces it
            try:
                value = fn(value, *(arg.evaluate(scope) for arg in args))
            except FilterError as exc:
                raise MappingError(self.where, str(exc)) from None
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise MappingError(self.where, f"filter '{name}' failed: {exc}") from None
        if self.default is not None and is_empty(value):
            value = self.default.evaluate(scope)
        return value

    def describe(self):
        text = self.inner.describe()
        if self.filters:
            text += " | " + " | ".join(name for name, _, _ in self.filters)
        if self.default is not None:
            text += f" (default {self.default.describe()})"
        return text


class Object(Node):
    __slots__ = ("fields", "merge", "omit", "drop_empty")

    def __init__(self, where, fields, merge, omit, drop_empty):
        self.where, self.fields, self.merge = where, fields, merge
        self.omit = frozenset(omit) | {key for key, _ in fields}
        self.drop_empty = drop_empty

    def evaluate(self, scope):
        result = {}
        if self.merge is not None:
            extra = self.merge.evaluate(scope)
            if isinstance(extra, dict):
                for key, value in extra.items():
                    if key not in self.omit and self._keep(value):
                        result[key] = value
            elif extra is not None:
                raise MappingError(self.where, f"@merge expected an object, got {describe_type(extra)}")
        for key, node in self.fields:
            value = node.evaluate(scope)
            if self._keep(value):
                result[key] = value
        return result

    def _keep(self, value) -> bool:
        return value is not None and not (self.drop_empty and is_empty(value))

    def describe(self):
        return "object"


class Array(Node):
    __slots__ = ("items",)

    def __init__(self, where, items):
        self.where, self.items = where, items

    def evaluate(self, scope):
        values = (item.evaluate(scope) for item in self.items)
        return [value for value in values if value is not None]

    def describe(self):
        return "list"


# --------------------------------------------------------------------------- compiler

class Compiler:
    """Turns YAML values into Nodes, collecting every problem instead of stopping.

    ``problem(path, message)`` is supplied by the loader so messages carry the
    file and line. ``settings`` are the declared settings names; ``variables``
    the names a template may read besides the event (``items``, ``vars``...).
    """

    def __init__(self, problem, settings: set[str], variables: set[str] = frozenset()):
        self.problem = problem
        self.settings = set(settings)
        self.variables = set(variables)
        self.vars: set[str] = set()
        self.problems: list = []

    def report(self, path, message):
        self.problems.append(self.problem(path, message))

    # --- entry points
    def value(self, raw, path: tuple, in_item: bool = False) -> Node:
        if isinstance(raw, str):
            return self.string(raw, path, in_item)
        if isinstance(raw, list):
            return Array(path, [self.value(item, path + (i,), in_item) for i, item in enumerate(raw)])
        if isinstance(raw, dict):
            if not SOURCE_KEYS.isdisjoint(raw):
                return self.directive(raw, path, in_item)
            return self.object(raw, path, in_item)
        return Literal(path, raw)

    def string(self, raw: str, path, in_item) -> Node:
        if not is_template(raw):
            return Literal(path, raw)
        whole = WHOLE_EXPRESSION.match(raw) is not None
        try:
            facts = template_facts(raw)
            if facts.unknown_names():
                compiled_template(raw, whole)  # let Jinja2 decide, and word the error, as it always has
        except TemplateError as exc:
            unknown = UNKNOWN_FILTER.match(exc.message or "")
            if unknown:
                self.report(path, f"unknown filter '{unknown.group(1)}' in template {raw!r} (known: {', '.join(sorted(FILTERS))})")
            else:
                self.report(path, f"template {raw!r} does not compile: {exc.message}")
            return Literal(path, None)
        for why in facts.refused:
            self.report(path, f"template {raw!r} {why}")
        self.check_names(facts, path, in_item)
        return Template(path, raw, whole)

    def check_names(self, facts: Facts, path, in_item):
        for name in sorted(facts.settings - self.settings):
            known = ", ".join(sorted(self.settings)) or "none"
            self.report(path, f"unknown setting 'settings.{name}' (declared: {known})")
        for name in sorted(facts.vars - self.vars):
            known = ", ".join(sorted(self.vars)) or "none"
            self.report(path, f"unknown variable 'vars.{name}' (defined before this point: {known})")
        if "item" in facts.names and not in_item and "item" not in self.variables:
            self.report(path, "'item' is only defined inside @each/@map")

    def jmespath(self, text, path, key):
        """Compile one JMESPath read; ``$.`` at the start reads the whole event even inside @each."""
        if not isinstance(text, str) or not text.strip():
            self.report(path, f"{key} expects a JMESPath expression (a non-empty string), got {describe_type(text)}")
            return None
        from_root = text.startswith("$.") or text == "$"
        source = text[2:] if text.startswith("$.") else ("@" if text == "$" else text)
        try:
            return jmespath.compile(source), from_root
        except JMESPathError as exc:
            detail = str(exc).splitlines()[0]
            self.report(path, f"{key} {text!r} is not a valid JMESPath expression: {detail}")
            return None

    def directive(self, raw: dict, path, in_item) -> Node:
        sources = [k for k in raw if k in SOURCES]
        if len(sources) > 1:
            self.report(path, f"use one of {', '.join(SOURCES)} per value, found {', '.join(sources)}")
        source = sources[0]
        allowed = ALLOWED_WITH[source]
        for key in raw:
            if key not in allowed:
                extra = "" if str(key).startswith("@") else " (a directive's keys all start with @; put plain keys in a nested object)"
                self.report(path + (key,), f"'{key}' does not go with {source}; allowed here: {', '.join(sorted(allowed))}{extra}")
        node = self.source(source, raw, path, in_item)
        filters = self.filters(raw["@filter"], path + ("@filter",), in_item) if "@filter" in raw else []
        default = self.value(raw["@default"], path + ("@default",), in_item) if "@default" in raw else None
        if filters or default is not None:
            return Modified(path, node, filters, default)
        return node

    def source(self, key, raw, path, in_item) -> Node:
        spec = raw[key]
        here = path + (key,)
        if key == "@literal":
            return Literal(path, spec)
        if key == "@path":
            texts = spec if isinstance(spec, list) else [spec]
            reads = []
            for i, text in enumerate(texts):
                compiled = self.jmespath(text, here + ((i,) if isinstance(spec, list) else ()), key)
                if compiled:
                    reads.append((text, compiled[0], compiled[1]))
            return Path(path, [str(t) for t in texts], reads)
        if key == "@if":
            compiled = self.jmespath(spec, here, key)
            then = self.value(raw["@then"], path + ("@then",), in_item) if "@then" in raw else None
            otherwise = self.value(raw["@else"], path + ("@else",), in_item) if "@else" in raw else None
            if then is None:
                self.report(path, "@if needs @then (and may have @else)")
            if not compiled:
                return Literal(path, None)
            return Condition(path, spec, compiled[0], compiled[1], then, otherwise)
        if key == "@each":
            if "@map" not in raw:
                self.report(path, "@each needs @map: how to map each item")
            items = self.value({"@path": spec} if isinstance(spec, str) else spec, here, in_item)
            mapper = self.value(raw.get("@map"), path + ("@map",), in_item=True)
            return Each(path, items, mapper)
        # @function
        fn = FUNCTIONS.get(spec) if isinstance(spec, str) else None
        if fn is None:
            known = ", ".join(sorted(FUNCTIONS)) or "none registered"
            self.report(here, f"unknown function {spec!r} (known: {known})")
        args = None
        if "@args" in raw:
            if not isinstance(raw["@args"], dict):
                self.report(path + ("@args",), "@args must be an object of keyword arguments")
            else:
                args = self.value(raw["@args"], path + ("@args",), in_item)
        return Function(path, spec, fn, args)

    def filters(self, spec, path, in_item) -> list:
        """``lower`` or ``[lower, {hmac_sha256: [key]}, {e164: US}]`` -> [(name, fn, [arg nodes])]."""
        compiled = []
        for i, entry in enumerate(spec if isinstance(spec, list) else [spec]):
            here = path + (i,) if isinstance(spec, list) else path
            if isinstance(entry, dict) and len(entry) == 1:
                name, args = next(iter(entry.items()))
                args = args if isinstance(args, list) else [args]
            elif isinstance(entry, str):
                name, args = entry, []
            else:
                self.report(here, "a filter is a name, or {name: [arguments]}")
                continue
            fn = FILTERS.get(name)
            if fn is None:
                self.report(here, f"unknown filter '{name}' (known: {', '.join(sorted(FILTERS))})")
                continue
            compiled.append((name, fn, [self.value(a, here + (name, j), in_item) for j, a in enumerate(args)]))
        return compiled

    def object(self, raw: dict, path, in_item) -> Node:
        fields = []
        for key, value in raw.items():
            if isinstance(key, str) and key.startswith("@"):
                if key not in OBJECT_OPTIONS:
                    hint = " (a value directive needs one of " + ", ".join(SOURCES) + ")" if key in DIRECTIVE_KEYS else ""
                    self.report(path + (key,), f"unknown directive '{key}'{hint}")
                continue
            fields.append((str(key), self.value(value, path + (key,), in_item)))
        merge = None
        if "@merge" in raw:
            spec = raw["@merge"]
            merge = self.value({"@path": spec} if isinstance(spec, (str, list)) else spec, path + ("@merge",), in_item)
        omit = raw.get("@omit", [])
        if not isinstance(omit, list) or not all(isinstance(k, str) for k in omit):
            self.report(path + ("@omit",), "@omit must be a list of key names")
            omit = []
        drop_empty = raw.get("@drop_empty", False)
        if not isinstance(drop_empty, bool):
            self.report(path + ("@drop_empty",), "@drop_empty must be true or false")
        return Object(path, fields, merge, omit, drop_empty is True)

    def define_var(self, name: str) -> None:
        self.vars.add(name)


def find_node(root: Node, path: tuple):
    """The node that produces the output field at ``path`` (for messages and explain)."""
    node = root
    for key in path:
        if isinstance(node, Modified):
            node = node.inner
        if isinstance(node, Object):
            node = next((child for name, child in node.fields if name == key), None)
            if node is None:
                return None
        else:
            return None
    return node


def leaves(node: Node, prefix: tuple = ()):
    """Yield (output path, node) for every non-object value, for ``eventmap explain``."""
    if isinstance(node, Object):
        if node.merge is not None:
            yield prefix + ("@merge",), node.merge
        for key, child in node.fields:
            yield from leaves(child, prefix + (key,))
    else:
        yield prefix, node
