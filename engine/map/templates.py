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


def environment() -> ImmutableSandboxedEnvironment:
    """The shared environment, with every filter registered so far (users may add some after import)."""
    for name, fn in FILTERS.items():
        if getattr(_ENVIRONMENT.filters.get(name), "__wrapped__", None) is not fn:
            _ENVIRONMENT.filters[name] = _undefined_as_none(fn)
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


def unknown_names(ast: nodes.Node) -> bool:
    """True when a template uses a filter or test the environment lacks (Jinja2 decides when that is an error)."""
    env = environment()
    return any(node.name not in env.filters for node in ast.find_all(nodes.Filter)) or \
        any(node.name not in env.tests for node in ast.find_all(nodes.Test))
