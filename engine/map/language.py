"""The mapping language: every value form and directive, defined once.

A value in a mapping is one of:

* a literal: a number, boolean, null, or a string with no ``{{``;
* a Jinja2 template: any string containing ``{{`` or ``{%``; a string that is
  one ``{{ expression }}`` and nothing else keeps the expression's type;
* an object with plain keys, each key mapped in turn (it may carry the object
  options of OBJECT_OPTIONS); a list, each element mapped;
* a directive: an object whose keys all start with ``@`` (DIRECTIVES).

Each directive is one class below, and the class is the whole definition: the
keys it owns, their JSON-Schema fragments, how it compiles (YAML -> node), the
Python it emits (``emit``, through map/codegen.py), how it describes itself for
``explain``, its error wordings, and a documented example that a test runs.
The mapping schema, the loader's checks and docs/language.md are generated
from (or checked against) this registry: ``python -m engine.map.reference``.

There is one semantics: the generated Python. ``Node.evaluate`` runs the code
generated for that one node, so explain, sources and envelopes read values
exactly as a compiled action does. Helpers that code uses live in runtime.py.
Everything that can be checked without an event (expression syntax, filter and
function names, settings names) is checked here, at load time.
"""
from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from jinja2 import TemplateError
from jmespath.exceptions import JMESPathError

from ..problems import bare_yaml_key
from . import jmespath_subset
from .codegen import Expression, compile_expression, empty_test, evaluator, reads_only_settings_template
from .filters import BUILTIN_FILTERS, FILTERS
from .functions import FUNCTIONS
from .reads import nested_or, plain_steps, root_reads, split_or
from .runtime import MappingError, Scope, describe_type, is_empty, is_truthy
from .templates import (
    NOT_WRITTEN,
    WHOLE_EXPRESSION,
    Facts,
    compiled_template,
    is_template,
    template_ast,
    template_facts,
)

# re-exported: callers import them from here
__all__ = ["MappingError", "Scope", "describe_type", "is_empty", "is_truthy", "nested_or", "plain_steps", "root_reads",
           "split_or", "template_ast"]

UNKNOWN_FILTER = re.compile(r"No filter named '([^']+)'")
ACTION_SCOPES = frozenset({"event"})   # besides settings and vars (and item inside @each/@map)
ENVELOPE_SCOPES = frozenset({"items"})  # an envelope, and a batch request, read the mapped items
SOURCE_SCOPES = frozenset({"payload", "lookups"})


# --------------------------------------------------------------------------- nodes

class Node:
    """A compiled value. ``where`` is its JSON path in the mapping file, for messages."""

    __slots__ = ("where", "_code")
    where: tuple  # the value's JSON path in the mapping file

    def evaluate(self, scope: Scope):
        """This node's value, computed by the Python generated for it (the one semantics)."""
        code: dict[bool, Any] | None = getattr(self, "_code", None)
        if code is None:
            code = {}
            self._code = code
        run = code.get(scope.in_item)
        if run is None:  # codegen writes the code each node's emit() describes
            run = code[scope.in_item] = evaluator(self, scope.in_item)
        return run(scope.event, scope.settings, scope.vars, scope.item)

    def emit(self, gen, ctx) -> str:
        """Write this node's statements through ``gen`` (a codegen.Generator); return the local holding the value."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def static(self) -> bool:
        """True when the value depends on settings alone (computed once per route)."""
        return False


_SLOTS: dict[tuple[type, tuple[str, ...]], tuple[str, ...]] = {}


def slots_of(cls: type, leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every slot of a node class, its bases' included, but those in ``leave_out``: what a walk over compiled
    values visits (worked out once per class)."""
    found = _SLOTS.get((cls, leave_out))
    if found is None:
        names: list[str] = []
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            names += [slots] if isinstance(slots, str) else list(slots)
        found = _SLOTS[(cls, leave_out)] = tuple(name for name in names if name not in leave_out)
    return found


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, where, value):
        self.where, self.value = where, value

    def emit(self, gen, ctx):
        out = gen.w.temp()
        gen.w.emit(f"{out} = {gen.literal(self.value)}")
        return out

    def static(self):
        return True

    def describe(self):
        return json.dumps(self.value, ensure_ascii=False)


class Template(Node):
    """A Jinja2 template; compiled on first use (loading many files stays fast), then kept."""

    __slots__ = ("source", "whole", "_render")

    def __init__(self, where, source, whole):
        self.where, self.source, self.whole = where, source, whole
        self._render = None

    def emit(self, gen, ctx):
        return gen.template(self, ctx)

    def static(self):
        return reads_only_settings_template(self.source)

    def run(self, names: dict):
        """Render with Jinja2 and these names; bad data raises MappingError (generated code calls this)."""
        if self._render is None:
            self._render = compiled_template(self.source, self.whole)
        try:
            return self._render(names)
        except MappingError:
            raise
        except Exception as exc:  # noqa: BLE001  a template is code from a file: whatever it raises is this event's verdict
            raise MappingError(self.where, template_failure(self.source, exc)) from None

    def describe(self):
        return f"template {self.source}"


def template_failure(source: str, exc: Exception) -> str:
    """The one wording of a template that failed on this event's data."""
    from .filters import FilterError
    if isinstance(exc, FilterError):
        return str(exc)
    return f"template {source!r} failed: {exc}"


class Object(Node):
    """Plain keys, each mapped; with the object options (@merge or @merge_all, @omit, @drop_empty)."""

    __slots__ = ("fields", "merges", "merge_key", "omit", "drop_empty")

    def __init__(self, where, fields, merges, omit, drop_empty, merge_key="@merge"):
        self.where, self.fields, self.merges, self.merge_key = where, fields, merges, merge_key
        self.omit = frozenset(omit) | {key for key, _ in fields}
        self.drop_empty = drop_empty

    def emit(self, gen, ctx):
        w = gen.w
        out = w.temp("obj")
        w.emit(f"{out} = {{}}")
        keep = (lambda v: f"not ({empty_test(v)})") if self.drop_empty else (lambda v: f"{v} is not None")
        omit = w.constant(self.omit, "OMIT") if self.merges else None
        for merge in self.merges:  # in order: a later source's keys win over an earlier one's
            merged = gen.value(merge, ctx)
            key, item = w.temp("k"), w.temp("x")
            w.emit(f"if isinstance({merged}, dict):")
            w.emit(f"    for {key}, {item} in {merged}.items():")
            w.emit(f"        if {key} not in {omit} and {keep(item)}:")
            w.emit(f"            {out}[{key}] = {item}")
            w.emit(f"elif {merged} is not None:")
            where = self.where if self.merge_key == "@merge" else merge.where  # @merge_all: which source
            w.emit(f"    raise MappingError({tuple(where)!r}, "
                   f"'{self.merge_key} expected an object, got ' + describe_type({merged}))")
        for key, child in self.fields:
            if type(child) is Literal:
                if child.value is not None and not (self.drop_empty and is_empty(child.value)):
                    w.emit(f"{out}[{key!r}] = {gen.literal(child.value)}")
                continue
            value = gen.value(child, ctx)
            if type(child) is Object and not self.drop_empty:
                w.emit(f"{out}[{key!r}] = {value}")  # an object is never null
                continue
            w.emit(f"if {keep(value)}:")
            w.emit(f"    {out}[{key!r}] = {value}")
        return out

    def describe(self):
        return "object"


class Array(Node):
    __slots__ = ("items",)

    def __init__(self, where, items):
        self.where, self.items = where, items

    def emit(self, gen, ctx):
        out = gen.w.temp("arr")
        gen.w.emit(f"{out} = []")
        for child in self.items:
            value = gen.value(child, ctx)
            gen.w.emit(f"if {value} is not None:")
            gen.w.emit(f"    {out}.append({value})")
        return out

    def describe(self):
        return "list"


class Modified(Node):
    """Filters, then a default, applied to another node's value (the @filter and @default options)."""

    __slots__ = ("inner", "filters", "default")

    def __init__(self, where, inner, filters, default):
        self.where, self.inner, self.filters, self.default = where, inner, filters, default

    def emit(self, gen, ctx):
        w = gen.w
        value = gen.value(self.inner, ctx)
        out = w.temp()
        w.emit(f"{out} = {value}")
        where = repr(tuple(self.where))
        for name, fn, args in self.filters:
            message = f"filter '{name}' failed: "
            w.emit(f"# filter {name}")
            w.emit("try:")
            with w.indented():
                values = [gen.value(arg, ctx) for arg in args]
                call = ", ".join([out] + values)
                present = getattr(fn, "when_present", None)  # a built-in: null in, null out
                if present is None:
                    w.emit(f"{out} = {w.constant(fn, 'filter_' + name)}({call})")
                    if name not in BUILTIN_FILTERS:  # a user's filter may return anything: JSON data only
                        w.emit(f"{out} = json_data({out})")
                else:
                    w.emit(f"if {out} is not None:")
                    w.emit(f"    {out} = {w.constant(present, 'filter_' + name)}({call})")
            w.emit("except MappingError:")
            w.emit("    raise")
            w.emit("except FilterError as exc:")
            w.emit(f"    raise MappingError({where}, str(exc)) from None")
            w.emit("except Exception as exc:")
            w.emit(f"    raise MappingError({where}, {message!r} + str(exc)) from None")
        if self.default is not None:
            w.emit(f"if {empty_test(out)}:")
            with w.indented():
                default = gen.value(self.default, ctx)
                w.emit(f"{out} = {default}")
        return out

    def describe(self):
        text = self.inner.describe()
        if self.filters:
            text += " | " + " | ".join(name for name, _, _ in self.filters)
        if self.default is not None:
            text += f" (default {self.default.describe()})"
        return text


# --------------------------------------------------------------------------- the directive registry

class Directive(Node):
    """A value computed by a directive; subclasses are registered with @directive.

    ``key`` is the directive's own key; ``companions`` the other keys it takes
    (key -> JSON-Schema fragment); ``schema`` the fragment for ``key``'s value;
    ``summary`` one sentence for the reference; ``example`` a mapping value, an
    input event and the output it gives (tests run it, the docs show it).
    """

    __slots__ = ()
    key: ClassVar[str]
    companions: ClassVar[dict[str, dict]] = {}
    schema: ClassVar[dict]
    summary: ClassVar[str]
    example: ClassVar[dict[str, Any]]

    @classmethod
    def compile(cls, compiler: Compiler, raw: dict, path: tuple, in_item: bool) -> Node:
        raise NotImplementedError


DIRECTIVES: dict[str, type[Directive]] = {}


def directive(cls: type[Directive]) -> type[Directive]:
    """Register a directive class under its key; the schema, loader, codegen and docs all read DIRECTIVES."""
    DIRECTIVES[cls.key] = cls
    return cls


class Option:
    """A key that modifies a directive (@filter, @default) or an object (@merge, @omit, @drop_empty).

    Compiled by Compiler.directive / Compiler.object into Modified and Object nodes.
    """

    __slots__ = ("key", "schema", "summary", "example")

    def __init__(self, key: str, schema: dict, summary: str, example: dict):
        self.key, self.schema, self.summary, self.example = key, schema, summary, example


JMESPATH_SCHEMA = {"type": "string", "minLength": 1}
MODIFIERS = {option.key: option for option in (
    Option("@filter", {"anyOf": [{"type": "string"}, {"type": "object"},
                                 {"type": "array", "items": {"type": ["string", "object"]}}]},
           "with any directive: filters applied in order, each a name or `{name: [arguments]}`",
           {"mapping": {"@path": "event.traits.email", "@filter": ["trim", "lower"]},
            "event": {"traits": {"email": " Ann@Example.COM "}}, "output": "ann@example.com"}),
    Option("@default", {},
           "with any directive: the value used when the result is empty (null, \"\", [] or {}; false and 0 are values)",
           {"mapping": {"@path": "event.traits.plan", "@default": "free"}, "event": {"traits": {"plan": ""}},
            "output": "free"}),
)}
OBJECT_OPTIONS = {option.key: option for option in (
    Option("@merge", {},
           "on an object: copy the keys of another object first, then the explicit keys (which win); the object is "
           "a path (a list of paths is one path with fallbacks, as in `@path`), a template, a directive or an "
           "object written out; null values are not copied",
           {"mapping": {"@merge": "event.traits", "@omit": ["email"], "plan": "pro"},
            "event": {"traits": {"email": "a@b.c", "name": "Ann", "plan": "free"}},
            "output": {"name": "Ann", "plan": "pro"}}),
    Option("@merge_all", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/value"}},
           "on an object: like `@merge`, for a list of sources, merged in order: a later source's keys win over an "
           "earlier one's, the explicit keys over all, and `@omit` applies to the result",
           {"mapping": {"@merge_all": ["event.properties", {"@path": "event.properties.product"}],
                        "@omit": ["product"], "qty": 2},
            "event": {"properties": {"name": "Shirt", "price": 10, "product": {"price": 8, "sku": "s1"}}},
            "output": {"name": "Shirt", "price": 8, "sku": "s1", "qty": 2}}),
    Option("@omit", {"type": "array", "items": {"type": "string"}},
           "on an object with @merge or @merge_all: keys of the merged objects to leave out",
           {"mapping": {"@merge": "event.traits", "@omit": ["email"]},
            "event": {"traits": {"email": "a@b.c", "name": "Ann"}}, "output": {"name": "Ann"}}),
    Option("@drop_empty", {"type": "boolean"},
           "on an object: also leave out empty values (\"\", [] and {}); false and 0 stay",
           {"mapping": {"@drop_empty": True, "a": {"@path": "event.properties.a"}, "b": {"@path": "event.properties.b"}},
            "event": {"properties": {"a": "", "b": 0}}, "output": {"b": 0}}),
)}


@directive
class Path(Directive):
    __slots__ = ("sources", "reads")
    key = "@path"
    schema: ClassVar[dict] = {"anyOf": [JMESPATH_SCHEMA, {"type": "array", "minItems": 1, "items": JMESPATH_SCHEMA}]}
    summary = ("a [JMESPath](https://jmespath.org) read that starts with a scope (`event.`, `settings.`, `vars.`, "
               "and `item.` inside `@each`); a list, or a top-level `a || b`, is fallbacks: the first that is not empty")
    example: ClassVar[dict[str, Any]] = {"mapping": {"@path": ["event.traits.email", "event.context.traits.email"]},
               "event": {"traits": {"email": ""}, "context": {"traits": {"email": "ann@example.com"}}},
               "output": "ann@example.com"}

    def __init__(self, where, sources, reads):
        # reads: list of (text, compiled expression), tried in order
        self.where, self.sources, self.reads = where, sources, reads

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        spec = raw["@path"]
        here = path + ("@path",)
        texts = spec if isinstance(spec, list) else [spec]
        reads = []
        for i, text in enumerate(texts):
            where = here + ((i,) if isinstance(spec, list) else ())
            reads += [(text, expression) for expression in compiler.fallbacks(text, where, "@path", in_item)]
        return cls(path, [str(t) for t in texts], reads)

    def emit(self, gen, ctx):
        w = gen.w
        out = w.temp()
        w.emit(f"# {where_text(self.where)}: {self.describe()}")
        if not self.reads:
            w.emit(f"{out} = None")
            return out
        opened = 0
        for _text, expression in self.reads:
            gen.read(expression, ctx, out)
            w.emit(f"if {empty_test(out)}:")
            w.depth += 1
            opened += 1
        w.emit(f"{out} = None")
        w.depth -= opened
        return out

    def describe(self):
        return "path " + " | else ".join(self.sources)


@directive
class LiteralValue(Directive):
    """``@literal``: compiles to a plain Literal node (it exists only to be written and documented)."""

    __slots__ = ()
    key = "@literal"
    schema: ClassVar[dict] = {}
    summary = "escape: the value exactly as written, directives and templates included"
    example: ClassVar[dict[str, Any]] = {"mapping": {"@literal": {"@path": "kept as is"}}, "event": {}, "output": {"@path": "kept as is"}}

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        return Literal(path, raw["@literal"])


@directive
class Condition(Directive):
    __slots__ = ("source", "expression", "then", "otherwise")
    key = "@if"
    companions: ClassVar[dict[str, dict]] = {"@then": {}, "@else": {}}
    schema: ClassVar[dict] = JMESPATH_SCHEMA
    summary = ("a condition: a JMESPath expression over the scopes, true unless null, false or empty; then `@then`, "
               "else `@else` (or nothing)")
    example: ClassVar[dict[str, Any]] = {"mapping": {"@if": "event.properties.revenue", "@then": "paid", "@else": "free"},
               "event": {"properties": {"revenue": 0}}, "output": "paid"}

    def __init__(self, where, source, expression, then, otherwise):
        self.where, self.source, self.expression = where, source, expression
        self.then, self.otherwise = then, otherwise

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        spec = raw["@if"]
        compiled = compiler.jmespath(spec, path + ("@if",), "@if", in_item)
        then = compiler.value(raw["@then"], path + ("@then",), in_item) if "@then" in raw else None
        otherwise = compiler.value(raw["@else"], path + ("@else",), in_item) if "@else" in raw else None
        if then is None:
            compiler.report(path, "@if needs @then (and may have @else)")
        if not compiled:
            return Literal(path, None)
        return cls(path, spec, compiled, then, otherwise)

    def emit(self, gen, ctx):
        w = gen.w
        test, out = w.temp("test"), w.temp()
        w.emit(f"# if {self.source}")
        gen.read(self.expression, ctx, test)
        if jmespath_subset.boolean(self.expression.parsed):  # true or false: its truth is Python's
            w.emit(f"if not {test}:")
        else:
            w.emit(f"if {test} is False or {empty_test(test)}:")
        with w.indented():
            w.emit(f"{out} = {gen.value(self.otherwise, ctx) if self.otherwise is not None else None}")
        w.emit("else:")
        with w.indented():
            w.emit(f"{out} = {gen.value(self.then, ctx) if self.then is not None else None}")
        return out

    def describe(self):
        return f"if {self.source}"


@directive
class Each(Directive):
    __slots__ = ("source", "mapper")
    key = "@each"
    companions: ClassVar[dict[str, dict]] = {"@map": {}}
    schema: ClassVar[dict] = {}
    summary = ("map each item of a list with `@map`; inside, `item` is the item (`item.sku`) and `event` still the "
               "event; null results are left out")
    example: ClassVar[dict[str, Any]] = {"mapping": {"@each": "event.properties.products", "@map": {"id": {"@path": "item.sku"}}},
               "event": {"properties": {"products": [{"sku": "a"}, {"sku": "b"}]}},
               "output": [{"id": "a"}, {"id": "b"}]}

    def __init__(self, where, source, mapper):
        self.where, self.source, self.mapper = where, source, mapper

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        if "@map" not in raw:
            compiler.report(path, f"{cls.key} needs @map: how to map each item")
        spec = raw[cls.key]
        items = compiler.value({"@path": spec} if isinstance(spec, str) else spec, path + (cls.key,), in_item)
        return cls(path, items, compiler.value(raw.get("@map"), path + ("@map",), in_item=True))

    def emit(self, gen, ctx):
        w = gen.w
        items = gen.value(self.source, ctx)
        out, item = w.temp("each"), w.temp("item")
        w.emit(f"if {items} is None:")
        w.emit(f"    {out} = None")
        w.emit(f"elif not isinstance({items}, list):")
        w.emit(f"    raise MappingError({tuple(self.where)!r}, '@each expected a list, got ' + describe_type({items}))")
        w.emit("else:")
        with w.indented():
            w.emit(f"{out} = []")
            w.emit(f"for {item} in {items}:")
            with w.indented():
                mapped = gen.value(self.mapper, gen.item_context(item))
                w.emit(f"if {mapped} is not None:")
                w.emit(f"    {out}.append({mapped})")
        return out

    def describe(self):
        return f"each item of {self.source.describe()}"


@directive
class MapValues(Directive):
    __slots__ = ("source", "mapper", "deep")
    key = "@map_values"
    companions: ClassVar[dict[str, dict]] = {"@map": {}, "@deep": {"type": "boolean"}}
    schema: ClassVar[dict] = {}
    summary = ("map each value of an object with `@map` (inside, `item` is the value), keeping the keys; "
               "with `@deep: true`, values in nested objects and lists too, at any depth; null results are left out")
    example: ClassVar[dict[str, Any]] = {"mapping": {"@map_values": "event.traits", "@deep": True,
                           "@map": {"@if": "type(item) == 'string'", "@then": "{{ item | upper }}",
                                    "@else": {"@path": "item"}}},
               "event": {"traits": {"name": "ann", "age": 3, "address": {"city": "oslo"}, "tags": ["a"]}},
               "output": {"name": "ANN", "age": 3, "address": {"city": "OSLO"}, "tags": ["A"]}}

    def __init__(self, where, source, mapper, deep):
        self.where, self.source, self.mapper, self.deep = where, source, mapper, deep

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        if "@map" not in raw:
            compiler.report(path, f"{cls.key} needs @map: how to map each value")
        deep = raw.get("@deep", False)
        if not isinstance(deep, bool):
            compiler.report(path + ("@deep",), "@deep must be true or false")
        spec = raw[cls.key]
        source = compiler.value({"@path": spec} if isinstance(spec, str) else spec, path + (cls.key,), in_item)
        return cls(path, source, compiler.value(raw.get("@map"), path + ("@map",), in_item=True), deep is True)

    def emit(self, gen, ctx):
        w = gen.w
        source = gen.value(self.source, ctx)
        out, walk = w.temp("values"), w.temp("walk")

        def mapped_values(target: str, values: str, as_list: bool) -> None:
            """``target`` = each value of ``values`` mapped, null results left out; with @deep, an object or
            list value is walked (``walk``) instead. The mapper is written out in the loop: plain loops, no
            call per value."""
            item, key = w.temp("item"), w.temp("k")
            w.emit(f"{target} = []" if as_list else f"{target} = {{}}")
            w.emit(f"for {item} in {values}:" if as_list else f"for {key}, {item} in {values}.items():")
            with w.indented():
                if self.deep:
                    mapped = w.temp("x")
                    w.emit(f"if isinstance({item}, (dict, list)):")
                    w.emit(f"    {mapped} = {walk}({item})")
                    w.emit("else:")
                    with w.indented():
                        w.emit(f"{mapped} = {gen.value(self.mapper, gen.item_context(item))}")
                else:
                    mapped = gen.value(self.mapper, gen.item_context(item))
                w.emit(f"if {mapped} is not None:")
                w.emit(f"    {target}.append({mapped})" if as_list else f"    {target}[{key}] = {mapped}")

        if self.deep:  # an object or list at any depth: its values mapped (what the top level does too)
            value, deep = w.temp("item"), w.temp("deep")
            w.emit(f"def {walk}({value}):")
            with w.indented():
                w.emit(f"if isinstance({value}, dict):")
                with w.indented():
                    mapped_values(deep, value, False)
                w.emit("else:")
                with w.indented():
                    mapped_values(deep, value, True)
                w.emit(f"return {deep}")
        w.emit(f"if {source} is None:")
        w.emit(f"    {out} = None")
        w.emit(f"elif not isinstance({source}, dict):")
        w.emit(f"    raise MappingError({tuple(self.where)!r}, '@map_values expected an object, got ' + "
               f"describe_type({source}))")
        w.emit("else:")
        with w.indented():
            if self.deep:
                w.emit(f"{out} = {walk}({source})")
            else:
                mapped_values(out, source, False)
        return out

    def describe(self):
        return f"each value of {self.source.describe()}" + (", at any depth" if self.deep else "")


@directive
class Function(Directive):
    __slots__ = ("name", "fn", "args")
    key = "@function"
    companions: ClassVar[dict[str, dict]] = {"@args": {"type": "object"}}
    schema: ClassVar[dict] = {"type": "string"}
    summary = "call a registered Python function with `@args` (an object, mapped first) as keyword arguments"
    example: ClassVar[dict[str, Any]] = {"mapping": {"@function": "example_full_name", "@args": {"first": {"@path": "event.traits.first"},
                                                                        "last": "Lee"}},
               "event": {"traits": {"first": "Ann"}}, "output": "Ann Lee"}

    def __init__(self, where, name, fn, args):
        self.where, self.name, self.fn, self.args = where, name, fn, args

    @classmethod
    def compile(cls, compiler, raw, path, in_item):
        spec = raw["@function"]
        fn = FUNCTIONS.get(spec) if isinstance(spec, str) else None
        if fn is None:
            known = ", ".join(sorted(FUNCTIONS)) or "none registered"
            compiler.report(path + ("@function",), f"unknown function {spec!r} (known: {known})")
        args = None
        if "@args" in raw:
            if not isinstance(raw["@args"], dict):
                compiler.report(path + ("@args",), "@args must be an object of keyword arguments")
            else:
                args = compiler.value(raw["@args"], path + ("@args",), in_item)
        return cls(path, spec, fn, args)

    def emit(self, gen, ctx):
        w = gen.w
        args = gen.value(self.args, ctx) if self.args is not None else "None"
        out = w.temp()
        fn = w.constant(self.fn, "function")
        message = f"function '{self.name}' failed: "
        w.emit("try:")
        w.emit(f"    {out} = json_data({fn}(**({args} or {{}})))")
        w.emit("except MappingError:")
        w.emit("    raise")
        w.emit("except Exception as exc:")
        w.emit(f"    raise MappingError({tuple(self.where)!r}, {message!r} + str(exc)) from None")
        return out

    def describe(self):
        return f"function {self.name}"


def where_text(where) -> str:
    return ".".join(str(p) for p in where)


def directive_keys() -> set[str]:
    """Every key a value object may carry that starts with @ (for the schema and the loader)."""
    keys = set(MODIFIERS) | set(OBJECT_OPTIONS)
    for cls in DIRECTIVES.values():
        keys |= {cls.key, *cls.companions}
    return keys


# --------------------------------------------------------------------------- compiler

class Compiler:
    """Turns YAML values into Nodes, collecting every problem instead of stopping.

    ``problem(path, message)`` is supplied by the loader so messages carry the
    file and line. ``settings`` are the declared settings names; ``variables``
    the names a template may read besides the event (``items``, ``vars``...).
    """

    def __init__(self, problem, settings: set[str], scopes: set[str] | frozenset[str] = ACTION_SCOPES):
        self.problem = problem
        self.settings = set(settings)
        self.scopes = frozenset(scopes) | {"settings", "vars"}
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
            if any(key in DIRECTIVES for key in raw):
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
        for name, args in facts.filter_calls:
            self.check_arguments(name, args, path, f"template {raw!r}: ")
        if not self.check_names(facts, raw, path, in_item):
            return Literal(path, None)
        return Template(path, raw, whole)

    def check_names(self, facts: Facts, raw: str, path, in_item) -> bool:
        """Settings, vars and scopes a template reads exist here; False (reported) when one does not."""
        ok = True
        for name in sorted(facts.scopes - {"settings", "vars"}):
            problem = self.scope_problem(name, in_item, f"{{{{ {name} }}}}")
            if problem:
                self.report(path, f"template {raw!r}: {problem}")
                ok = False
        for name in sorted(facts.settings - self.settings):
            known = ", ".join(sorted(self.settings)) or "none"
            self.report(path, f"unknown setting 'settings.{name}' (declared: {known})")
        for name in sorted(facts.vars - self.vars):
            known = ", ".join(sorted(self.vars)) or "none"
            self.report(path, f"unknown variable 'vars.{name}' (defined before this point: {known})")
        return ok

    def scope_problem(self, name: str, in_item: bool, shown: str) -> str | None:
        """Why ``name`` cannot start a read here (None: it can), saying what to write instead."""
        if name == "item":
            return None if in_item else "'item' is only defined inside @each/@map and @map_values/@map"
        if name in self.scopes:
            return None
        if name == "steps":
            return "'steps' reads the results of earlier steps, and this action has no steps"
        readable = ", ".join(sorted(self.scopes | ({"item"} if in_item else set())))
        if name == "@":
            instead = "item (the item) or event (the whole event)" if in_item else "event"
            return f"'@' no longer means the whole event: write {instead} (scopes here: {readable})"
        if "event" in self.scopes:
            instead = (f"item.{name} (the item) or event.{name} (the event)" if in_item else f"event.{name}")
            return f"'{name}' is not a scope: write {instead} (scopes here: {readable})"
        return f"'{name}' is not a scope (scopes here: {readable})"

    def jmespath(self, text, path, key, in_item: bool = False):
        """Compile one JMESPath read whose root names are scopes (``event.traits.email``); None when it is bad."""
        if not isinstance(text, str) or not text.strip():
            self.report(path, f"{key} expects a JMESPath expression (a non-empty string), got {describe_type(text)}")
            return None
        if text == "$" or text.startswith("$."):
            self.report(path, f"{key} {text!r}: '$.' is no longer the event; write {'event' + text[1:]!r}")
            return None
        try:
            expression = compile_expression(text)
        except JMESPathError as exc:
            detail = str(exc).splitlines()[0]
            self.report(path, f"{key} {text!r} is not a valid JMESPath expression: {detail}")
            return None
        negation = expression.negation_problem
        if negation:
            self.report(path, f"{key} {text!r}: {negation}")
            return None
        ok = True
        for name in dict.fromkeys(root_reads(expression.parsed)):
            problem = self.scope_problem(name, in_item, text)
            if problem:
                self.report(path, f"{key} {text!r}: {problem}")
                ok = False
        steps = plain_steps(expression.parsed)
        if ok and steps and steps[0] == "settings" and len(steps) > 1 and steps[1] not in self.settings:
            known = ", ".join(sorted(self.settings)) or "none"
            self.report(path, f"unknown setting 'settings.{steps[1]}' (declared: {known})")
        return expression if ok else None

    def fallbacks(self, text, path, key, in_item: bool = False) -> list:
        """A read as its fallbacks: a top-level ``a || b`` is ``[a, b]`` under the one emptiness rule.

        JMESPath's own ``||`` skips ``false``; inside a larger expression it is refused with a hint.
        """
        compiled = self.jmespath(text, path, key, in_item)
        if compiled is None:
            return []
        if "||" not in text:   # most reads: one path, nothing to split
            return [compiled]
        parts = split_or(compiled.parsed)
        if any(nested_or(part) for part in parts):
            self.report(path, f"{key} {text!r}: '||' inside an expression would skip false; "
                              "write the fallbacks as a list instead: [first.path, second.path]")
            return []
        if len(parts) == 1:
            return [compiled]
        return [Expression(text, part) for part in parts]

    def directive(self, raw: dict, path, in_item) -> Node:
        sources = [k for k in raw if k in DIRECTIVES]
        if len(sources) > 1:
            self.report(path, f"use one of {', '.join(DIRECTIVES)} per value, found {', '.join(sources)}")
        kind = DIRECTIVES[sources[0]]
        allowed = {kind.key, *kind.companions, *MODIFIERS}
        for key in raw:
            if key not in allowed:
                extra = "" if str(key).startswith("@") else " (a directive's keys all start with @; put plain keys in a nested object)"
                self.report(path + (key,), f"'{key}' does not go with {kind.key}; allowed here: {', '.join(sorted(allowed))}{extra}")
        node = kind.compile(self, raw, path, in_item)
        filters = self.filters(raw["@filter"], path + ("@filter",), in_item) if "@filter" in raw else []
        default = self.value(raw["@default"], path + ("@default",), in_item) if "@default" in raw else None
        if filters or default is not None:
            return Modified(path, node, filters, default)
        return node

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
            values = [self.value(a, here + (name, j), in_item) for j, a in enumerate(args)]
            self.check_arguments(name, [v.value if type(v) is Literal else NOT_WRITTEN for v in values], here, "")
            compiled.append((name, fn, values))
        return compiled

    def check_arguments(self, name: str, args: list, path, context: str) -> None:
        """A filter's own load-time check of the arguments written for it (regex_replace's pattern)."""
        check = getattr(FILTERS.get(name), "check_arguments", None)
        problem = check(args) if check is not None else None
        if problem:
            self.report(path, context + problem)

    def object(self, raw: dict, path, in_item) -> Node:
        fields = []
        for key, value in raw.items():
            bare = bare_yaml_key(key)
            if bare:
                self.report(path + (key,), bare)
                continue
            if isinstance(key, str) and key.startswith("@"):
                if key not in OBJECT_OPTIONS:
                    hint = " (a value directive needs one of " + ", ".join(DIRECTIVES) + ")" if key in directive_keys() else ""
                    self.report(path + (key,), f"unknown directive '{key}'{hint}")
                continue
            fields.append((str(key), self.value(value, path + (key,), in_item)))
        merges, merge_key = [], "@merge"
        if "@merge" in raw:
            merges.append(self.merge_source(raw["@merge"], path + ("@merge",), in_item))
        if "@merge_all" in raw:
            spec, merge_key = raw["@merge_all"], "@merge_all"
            if "@merge" in raw:
                self.report(path + ("@merge_all",), "use @merge for one source or @merge_all for several, not both")
            elif not isinstance(spec, list) or not spec:
                self.report(path + ("@merge_all",), "@merge_all expects a list of sources, merged in order (later "
                                                    "keys win): [event.properties, {\"@path\": item.fields}]")
            else:
                merges = [self.merge_source(source, path + ("@merge_all", i), in_item) for i, source in enumerate(spec)]
        omit = raw.get("@omit", [])
        if not isinstance(omit, list) or not all(isinstance(k, str) for k in omit):
            self.report(path + ("@omit",), "@omit must be a list of key names")
            omit = []
        drop_empty = raw.get("@drop_empty", False)
        if not isinstance(drop_empty, bool):
            self.report(path + ("@drop_empty",), "@drop_empty must be true or false")
        return Object(path, fields, merges, omit, drop_empty is True, merge_key)

    def merge_source(self, spec, path, in_item) -> Node:
        """An object to merge: a path (a list of paths is one path with fallbacks, as in @path), a template,
        a directive, or an object written out."""
        if isinstance(spec, list) or (isinstance(spec, str) and not is_template(spec)):
            return self.value({"@path": spec}, path, in_item)
        return self.value(spec, path, in_item)

    def define_var(self, name: str) -> None:
        self.vars.add(name)


def find_node(root: Node, path: tuple) -> Node | None:
    """The node that produces the output field at ``path`` (for messages and explain)."""
    node: Node | None = root
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


def output_fields(node: Node, value, path: tuple = ()):
    """Yield (output path, how it is made, value) for each field of ``value``, the value ``node`` made.

    For ``eventmap explain``: the fields are those of the value itself (render's), so a key ``@omit``
    or a null left out is not there, and each key ``@merge`` brought is shown as coming from it.
    """
    if isinstance(node, Object):
        value = value if isinstance(value, dict) else {}
        explicit = {key for key, _ in node.fields}
        if node.merges:
            how = f"from {node.merge_key} " + ", then ".join(merge.describe() for merge in node.merges)
            for key, item in value.items():
                if key not in explicit:
                    yield path + (key,), how, item
        for key, child in node.fields:
            yield from output_fields(child, value.get(key), path + (key,))
    else:
        yield path, node.describe(), value
