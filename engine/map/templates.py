"""The one Jinja2 environment every mapping template is compiled in.

Sandboxed, because mapping files are configuration that people share; no
HTML autoescaping, because we render URLs, headers and JSON values; and a
lenient undefined, because events often lack optional fields: a missing value
renders as empty text (or ``None`` in a whole-value expression) and the
``required`` list is where absence becomes an error.

Bounded, because a template is code that runs per event: text and lists a
template builds (``*``, ``+``, ``**``, calls, amplifying filters, its output)
stay within ``MAX_SIZE``; past it the event is rejected with a clear message
instead of the process filling its memory. Templates that can only be
refused by the sandbox (``''.__class__``, ``traits.update(...)``) are found
when the file loads (``Facts.refused``).
"""
from __future__ import annotations

import functools
import math
import re

from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import operators
from .filters import FILTERS, MAX_SIZE, TooLarge, refuse_over, text_of
from .runtime import json_data

MAX_POWER_BITS = 100_000  # an integer ``**`` may make
# Jinja2 filters whose result can be far larger than their input
AMPLIFYING_FILTERS = ("center", "indent", "format", "replace", "wordwrap", "batch", "list")  # join is ours (filters.py)
# methods the immutable sandbox refuses to call: they change their object
MUTATING_METHODS = frozenset({"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update",
                              "setdefault", "add", "discard", "sort", "reverse", "difference_update",
                              "intersection_update", "symmetric_difference_update"})

TEMPLATE_MARKERS = ("{{", "{%")
# A template that is one expression and nothing else yields the value itself
# (a number stays a number) instead of text.
WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


def _undefined_as_none(fn):
    def call(value, *args, **kwargs):
        if isinstance(value, Undefined):
            value = None
        return fn(value, *(None if isinstance(a, Undefined) else a for a in args), **kwargs)
    return functools.wraps(fn)(call)


def _size(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def check_size(value, what: str):
    """``value`` itself, or TooLarge when it is text or a list over the bound."""
    refuse_over(_size(value), what)
    return value


class _Environment(ImmutableSandboxedEnvironment):
    """``properties.items`` is the event's "items" key, not the dict method of that name; sizes are bounded.

    ``or``, ``and``, ``not`` and ``~`` mean what the language says (map/operators.py rewrites each template's
    tree before Jinja2 compiles it).
    """

    intercepted_binops = frozenset({"*", "+", "**"})

    def getattr(self, obj, attribute):
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for text, times in ((left, right), (right, left)):
                if _size(text) and isinstance(times, int):
                    refuse_over(_size(text) * times, f"'*' on a value of {_size(text):,}")
        elif operator == "+":
            refuse_over(_size(left) + _size(right), "'+'")
        elif isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                and right * math.log2(abs(left)) > MAX_POWER_BITS:
            raise TooLarge(f"'**' would make a number of about {right * math.log2(abs(left)):,.0f} bits; "
                           f"a template may build at most {MAX_POWER_BITS:,}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # Jinja2's own (odd) parameter names
        """A call (a method, a macro, ``loop``): arguments and result within the bound."""
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in ("format", "format_map"):
            _check_format(owner, "str.format")
        for arg in (*args, *kwargs.values()):
            check_size(arg, "a call's argument")
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_SIZE \
                    and isinstance(getattr(__obj, "__self__", None), (str, list)):
                refuse_over(abs(arg), f"{getattr(__obj, '__name__', 'a method')}()")
        return check_size(super().call(__context, __obj, *args, **kwargs), "a call")


# a width or precision in a format string: "%300000000s", "{:>300000000}"
_FORMAT_WIDTHS = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?|\{[^{}]*?:[^{}\d]*(\d+)(?:\.(\d+))?[^{}]*\}")


def _check_format(text, what: str) -> None:
    if isinstance(text, str) and ("%" in text or "{" in text):
        for match in _FORMAT_WIDTHS.finditer(text):
            for width in match.groups():
                if width:
                    refuse_over(int(width), f"{what} with width {int(width):,}")


def _estimate(name: str, args: tuple) -> int:
    """How large a replace would come out, before making it."""
    values = [a for a in args if not hasattr(a, "environment")]  # drop Jinja2's eval context
    if name == "replace" and len(values) >= 3 and all(isinstance(v, str) for v in values[:3]):
        text, old, new = values[:3]
        return len(text) + (text.count(old) if old else len(text) + 1) * len(new)
    return 0


def _bounded_filter(name: str, fn):
    """A Jinja2 filter whose width or count arguments and result stay within the bound."""
    def bounded(*args, **kwargs):
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool):
                refuse_over(abs(arg), f"the '{name}' filter with {arg:,}")
        if name == "format" and args:
            _check_format(args[0], "the 'format' filter")
        refuse_over(_estimate(name, args), f"the '{name}' filter")
        return check_size(fn(*args, **kwargs), f"the '{name}' filter")
    return functools.wraps(fn)(bounded)  # keeps jinja_pass_arg (eval context) and the name


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(
        autoescape=False,
        undefined=ChainableUndefined,
        keep_trailing_newline=True,
        finalize=text_of,  # a null reads as nothing, not "None"; true as "true", a list as JSON
    )
    env.tests.update(operators.TESTS)
    env.filters.update(operators.FILTERS)
    for name in AMPLIFYING_FILTERS:
        env.filters[name] = _bounded_filter(name, env.filters[name])
    env.globals.pop("namespace", None)  # state carried across loop iterations: doubling text 40 times
    return env


def render_bounded(template, names: dict) -> str:
    """Render ``template`` piece by piece, refusing output past the bound (loops can repeat text)."""
    parts, size = [], 0
    for part in template.generate(names):
        size += len(part)
        refuse_over(size, "the template's output")
        parts.append(part)
    return "".join(parts)


_ENVIRONMENT = _make_environment()
_KNOWN_FILTERS = [0]  # how many of FILTERS the environment has (filters are only ever added)


def environment() -> ImmutableSandboxedEnvironment:
    """The shared environment, with every filter registered so far (users may add some after import)."""
    if _KNOWN_FILTERS[0] != len(FILTERS):
        for name, fn in FILTERS.items():
            if getattr(_ENVIRONMENT.filters.get(name), "__wrapped__", None) is not fn:
                _ENVIRONMENT.filters[name] = _undefined_as_none(fn)
        _KNOWN_FILTERS[0] = len(FILTERS)
    return _ENVIRONMENT


def syntax_tree(source: str) -> nodes.Template:
    """A template's syntax tree with the language's operators (map/operators.py): the one tree Jinja2 compiles
    (and folds constants in) and jinja_subset translates. A new tree per call: compiling changes it."""
    env = environment()
    tree = env.parse(source)
    operators.rewrite(tree)
    tree.set_environment(env)
    return tree


@functools.lru_cache(maxsize=4096)
def parsed_template(source: str) -> nodes.Template:
    """The syntax tree of a template, kept for reading (templates recur across files: parse each once)."""
    return syntax_tree(source)


def template_ast(source: str) -> nodes.Template:
    """The syntax tree of a template; for a whole ``{{ expression }}``, of that expression alone."""
    whole = WHOLE_EXPRESSION.match(source)
    return parsed_template("{{" + whole.group("expr") + "}}" if whole else source)


@functools.lru_cache(maxsize=4096)
def template_facts(source: str) -> Facts:
    return Facts(template_ast(source))


@functools.lru_cache(maxsize=4096)
def compiled_template(source: str, whole: bool):
    """A render function ``names -> value`` for a template; a whole ``{{ expression }}`` keeps its type.

    Its value is JSON data (runtime.json_data): missing data is null at any depth, and anything else that
    is not JSON data fails as this template's failure.
    """
    env = environment()
    if whole:
        match = WHOLE_EXPRESSION.match(source)
        assert match is not None
        expression = syntax_tree("{{" + match.group("expr") + "}}").body[0].nodes[0]  # type: ignore[attr-defined]
        tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)], lineno=1)
        tree.set_environment(env)
        run = TemplateExpression(env.from_string(tree), undefined_to_none=False)
        return lambda names: json_data(run(**names))
    return functools.partial(render_bounded, env.from_string(syntax_tree(source)))


NOT_WRITTEN = object()  # a filter argument computed from data, not written in the mapping


def is_template(text: str) -> bool:
    return any(marker in text for marker in TEMPLATE_MARKERS)


def attribute_reads(found: list[nodes.Node], root: str) -> set[str]:
    """Names read as ``root.NAME`` or ``root['NAME']`` among a template's nodes."""
    names = set()
    for node in found:
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            target, arg = getattr(node, "node", None), getattr(node, "arg", None)
            if isinstance(target, nodes.Name) and target.name == root:
                if isinstance(node, nodes.Getattr):
                    names.add(node.attr)
                elif isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def refused(found: list[nodes.Node]) -> list[str]:
    """Why the sandbox would refuse a template (given its nodes) on every event, found without running it."""
    reads, calls = [], []
    for node in found:
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
            if isinstance(name, str) and name.startswith("__"):
                reads.append(f"reads '{name}': names starting with '__' are Python internals, which templates cannot reach")
        elif isinstance(node, nodes.Call):
            target = getattr(node, "node", None)
            if isinstance(target, nodes.Getattr) and target.attr in MUTATING_METHODS:
                calls.append(f"calls '.{target.attr}()': templates cannot change data")
    return reads + calls


class Facts:
    """What the loader checks about a template, worked out once per template text (files repeat them), in one
    walk of its tree."""

    __slots__ = ("refused", "settings", "vars", "names", "scopes", "filters", "tests", "filter_calls")

    def __init__(self, ast: nodes.Node):
        found = list(ast.find_all(nodes.Node))
        self.refused = refused(found)
        self.settings = attribute_reads(found, "settings")
        self.vars = attribute_reads(found, "vars")
        names = [node for node in found if isinstance(node, nodes.Name)]
        self.names = {node.name for node in names if node.ctx == "load"}
        # the scopes it reads (event, settings...): names it neither defines ({% set %}, loops) nor Jinja2 has
        stored = {node.name for node in names if node.ctx in ("store", "param")}
        stored |= {node.name for node in found if isinstance(node, nodes.Macro)}
        self.scopes = self.names - stored - set(_ENVIRONMENT.globals) - {"loop", "caller"}
        filters = [node for node in found if isinstance(node, nodes.Filter)]
        self.filters = {node.name for node in filters}
        # each filter call's arguments, as written (NOT_WRITTEN: computed), for filters that check theirs at load
        self.filter_calls = [(node.name, [a.value if isinstance(a, nodes.Const) else NOT_WRITTEN for a in node.args])
                             for node in filters]
        self.tests = {node.name for node in found if isinstance(node, nodes.Test)}

    def unknown_names(self) -> bool:
        """True when a filter or test is missing from the environment (Jinja2 decides whether that is an error)."""
        env = environment()
        return any(name not in env.filters for name in self.filters) or any(name not in env.tests for name in self.tests)
