"""Translate the simplest Jinja2 templates into Python statements.

Why: rendering a template through Jinja2 costs several microseconds (a new
context per call). Most mapping templates are only reads with a filter or
two, such as ``"{{ settings.base_url }}/v1/{{ type }}"``; those become plain
Python here. Anything outside the subset raises :class:`Unsupported` and the
caller keeps Jinja2 for it, so the subset only has to be right, not complete.

The subset keeps Jinja2's semantics exactly, on the same tree (map/operators.py
has already put the language's ``or``, ``and``, ``not`` and ``~`` into it): a
missing value is Undefined (``_U`` in generated code), which reads as "" in text
and null in a whole expression; ``a.b`` reads a dict key; filters and the
operators' tests are the same callables Jinja2 would call; text and whole
values go through the same filters.text_of and runtime.json_data.
"""
from __future__ import annotations

from jinja2 import nodes

from ..problems import EventmapError
from . import operators
from .filters import FILTERS

# Attribute names some JSON value has as a Python attribute (dict.items, str.upper...):
# Jinja2 would return the method, so such reads stay with Jinja2.
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))
_SPECIAL_NAMES = {"self", "loop", "caller", "varargs", "kwargs", "super"}


class Unsupported(EventmapError):
    """The template uses something outside the subset; keep Jinja2 for it."""


def plain_attribute(name: str) -> bool:
    return not any(hasattr(kind, name) for kind in _JSON_TYPES)


class Translator:
    """Emits statements through ``writer`` and returns the name holding each value.

    ``resolve(name)`` gives the Python expression for a top-level template name
    (settings, vars, item, or an event key); it raises Unsupported for names
    Jinja2 would find among its globals.
    """

    def __init__(self, writer, environment, resolve):
        self.w = writer
        self.env = environment
        self.resolve = resolve

    def whole(self, ast) -> str:
        """The value of a template that is one ``{{ expression }}``: JSON data (Undefined becomes None)."""
        expr = self._single_expression(ast)
        value = self.expr(expr)
        out = self.w.temp()
        self.w.emit(f"{out} = {value} if {value}.__class__ in _JSON_SCALARS else json_data({value})")
        return out

    def text(self, ast) -> str:
        """The text of a template made of literal text and ``{{ }}`` outputs."""
        if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
            raise Unsupported("statements")
        parts = []
        for node in ast.body[0].nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(repr(node.data))
            else:
                value = self.expr(node)
                parts.append(f"({value} if {value}.__class__ is str else {self._text_of()}({value}))")
        out = self.w.temp()
        self.w.emit(f"{out} = " + (" + ".join(parts) if parts else "''"))
        return out

    def _single_expression(self, ast):
        if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output) or len(ast.body[0].nodes) != 1:
            raise Unsupported("not one expression")
        node = ast.body[0].nodes[0]
        if isinstance(node, nodes.TemplateData):
            raise Unsupported("text")
        return node

    def expr(self, node) -> str:
        if isinstance(node, nodes.Const):
            if node.value is None or isinstance(node.value, (str, bool, int)):
                out = self.w.temp()
                self.w.emit(f"{out} = {node.value!r}")
                return out
            raise Unsupported("constant")
        if isinstance(node, nodes.Name):
            if node.name in self.env.globals or node.name in _SPECIAL_NAMES:
                raise Unsupported("global name")
            out = self.w.temp()
            self.w.emit(f"{out} = {self.resolve(node.name)}")
            return out
        if isinstance(node, nodes.Getattr):
            if not plain_attribute(node.attr):
                raise Unsupported("attribute that is also a method")
            out = self.w.temp()
            if isinstance(node.node, nodes.Name) and self.resolve(node.node.name) == "event":
                self.w.emit(f"{out} = event.get({node.attr!r}, _U)")  # an action's event is always an object
                return out
            inner = self.expr(node.node)
            self.w.emit(f"{out} = {inner}.get({node.attr!r}, _U) if isinstance({inner}, dict) else _U")
            return out
        if isinstance(node, nodes.Filter):
            return self._filter(node)
        if isinstance(node, nodes.Concat):  # each part is text already (operators.TEXT)
            values = [self.expr(part) for part in node.nodes]
            out = self.w.temp()
            self.w.emit(f"{out} = " + " + ".join(values))
            return out
        if isinstance(node, nodes.CondExpr):
            return self._condition(node)
        if isinstance(node, nodes.Test) and node.name in operators.TESTS and not (node.args or node.kwargs):
            value = self.expr(node.node)
            out = self.w.temp()
            self.w.emit(f"{out} = {self.w.constant(self.env.tests[node.name], 'test')}({value})")
            return out
        if isinstance(node, nodes.Not) and isinstance(node.node, nodes.Test):
            value = self.expr(node.node)
            out = self.w.temp()
            self.w.emit(f"{out} = not {value}")
            return out
        if isinstance(node, (nodes.And, nodes.Or)) and isinstance(node.left, nodes.Test):
            left = self.expr(node.left)  # true or false: Python's and/or mean what the language's do
            out = self.w.temp()
            self.w.emit(f"if {'not ' if isinstance(node, nodes.And) else ''}{left}:")
            self.w.emit(f"    {out} = {left}")
            self.w.emit("else:")
            with self.w.indented():
                right = self.expr(node.right)
                self.w.emit(f"{out} = {right}")
            return out
        raise Unsupported(type(node).__name__)

    def _condition(self, node) -> str:
        """``a if test else b``, each side computed only when chosen (as Jinja2 does)."""
        test = self.expr(node.test)
        out = self.w.temp()
        self.w.emit(f"if {test}:")
        with self.w.indented():
            self.w.emit(f"{out} = {self.expr(node.expr1)}")
        self.w.emit("else:")
        with self.w.indented():
            self.w.emit(f"{out} = {self.expr(node.expr2) if node.expr2 is not None else '_U'}")
        return out

    def _text_of(self) -> str:
        return self.w.constant(self.env.filters[operators.TEXT], "text_of")

    def _filter(self, node) -> str:
        if node.node is None or node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise Unsupported("filter form")
        if node.name == operators.TEXT:
            value = self.expr(node.node)
            out = self.w.temp()
            self.w.emit(f"{out} = {value} if {value}.__class__ is str else {self._text_of()}({value})")
            return out
        if node.name == "join" and isinstance(node.node, (nodes.List, nodes.Filter)):
            return self._join(node)
        if node.name not in FILTERS:
            raise Unsupported("a Jinja2 built-in filter")
        fn = self.env.filters[node.name]  # ours, wrapped by templates._undefined_as_none
        value = self.expr(node.node)
        args = [self.expr(arg) for arg in node.args]
        out = self.w.temp()
        present = getattr(FILTERS[node.name], "when_present", None)  # a built-in: null in, null out
        if present is None:
            name = self.w.constant(fn, f"jinja_{node.name}")
            shown = ", ".join([f"None if {value} is _U else {value}"] + [f"None if {a} is _U else {a}" for a in args])
            self.w.emit(f"{out} = {name}({shown})")
            return out
        name = self.w.constant(present, f"jinja_{node.name}")
        shown = ", ".join([value] + [f"None if {a} is _U else {a}" for a in args])
        self.w.emit(f"{out} = None if {value} is _U or {value} is None else {name}({shown})")
        return out

    def _join(self, node) -> str:
        """``[a, b] | join(' ')`` and ``[a, b] | select | join(' ')``, a full name from its parts.

        The join filter itself (null and missing items left out); select keeps the items that are
        true to Jinja2, Undefined being false.
        """
        if len(node.args) > 1 or (node.args and not isinstance(node.args[0], nodes.Const)) \
                or (node.args and not isinstance(node.args[0].value, str)):
            raise Unsupported("join form")
        separator = node.args[0].value if node.args else ""
        inner, keep_true = node.node, False
        if isinstance(inner, nodes.Filter) and inner.name == "select" and "select" not in FILTERS:
            if inner.args or inner.kwargs or inner.dyn_args or inner.dyn_kwargs:
                raise Unsupported("select with a test")
            inner, keep_true = inner.node, True
        if not isinstance(inner, nodes.List):
            raise Unsupported("join of something other than a list written in the template")
        items = [self.expr(item) for item in inner.items]
        out = self.w.temp()
        listed = "[" + ", ".join(items) + (",]" if len(items) == 1 else "]")
        if keep_true:
            listed = f"[x for x in {listed} if x is not _U and x]"
        join = self.w.constant(FILTERS["join"], "jinja_join")
        self.w.emit(f"{out} = {join}({listed}, {separator!r})")
        return out


def reads_only_settings(ast, builtin_filters) -> bool:
    """True when a template's value depends on settings alone (so it can be rendered once per route)."""
    names = {node.name for node in ast.find_all(nodes.Name) if node.ctx == "load"}
    if not names <= {"settings"}:
        return False
    if any(node.name not in builtin_filters for node in ast.find_all((nodes.Filter, nodes.Test))):
        return False  # a user's filter (or Jinja2's random) may not give the same answer twice
    return not any(isinstance(call.node, nodes.Name) for call in ast.find_all(nodes.Call))
