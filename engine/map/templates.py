"""The one Jinja2 environment every mapping template is compiled in.

Sandboxed, because mapping files are configuration that people share; no
HTML autoescaping, because we render URLs, headers and JSON values; and a
lenient undefined, because events often lack optional fields: a missing value
renders as empty text (or ``None`` in a whole-value expression) and the
``required`` list is where absence becomes an error.
"""
from __future__ import annotations

import functools
import re

from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .filters import FILTERS

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


class _Environment(ImmutableSandboxedEnvironment):
    """``properties.items`` is the event's "items" key, not the dict method of that name."""

    def getattr(self, obj, attribute):
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _make_environment() -> ImmutableSandboxedEnvironment:
    return _Environment(
        autoescape=False,
        undefined=ChainableUndefined,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,  # a null reads as nothing, not "None"
    )


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


def is_template(text: str) -> bool:
    return any(marker in text for marker in TEMPLATE_MARKERS)


def attribute_reads(ast: nodes.Node, root: str) -> set[str]:
    """Names read as ``root.NAME`` or ``root['NAME']`` anywhere in a template."""
    names = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == root:
            if isinstance(node, nodes.Getattr):
                names.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                names.add(node.arg.value)
    return names


def names_read(ast: nodes.Node) -> set[str]:
    return {node.name for node in ast.find_all(nodes.Name) if node.ctx == "load"}


class Facts:
    """What the loader checks about a template, worked out once per template text (files repeat them)."""

    __slots__ = ("settings", "vars", "names", "filters", "tests")

    def __init__(self, ast: nodes.Node):
        self.settings = attribute_reads(ast, "settings")
        self.vars = attribute_reads(ast, "vars")
        self.names = names_read(ast)
        self.filters = {node.name for node in ast.find_all(nodes.Filter)}
        self.tests = {node.name for node in ast.find_all(nodes.Test)}

    def unknown_names(self) -> bool:
        """True when a filter or test is missing from the environment (Jinja2 decides whether that is an error)."""
        env = environment()
        return any(name not in env.filters for name in self.filters) or any(name not in env.tests for name in self.tests)
