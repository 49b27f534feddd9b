"""What generated mapping code refers to at run time, defined once.

Why: the mapping language has one semantics, the Python that map/codegen.py
writes. The rules that code (and anything else that reads mapped values: the
``required`` check, sources, routes) applies live here, so each is written once:

* **empty** means null, ``""``, ``[]`` and ``{}``; ``false`` and ``0`` are values.
  Fallbacks, ``@default``, the ``default`` filter, ``required``, ``@drop_empty``
  and the template ``or`` all use it;
* **truthy** (``@if``, a lookup's ``when``) is JMESPath's: empty or ``false`` is false.
"""
from __future__ import annotations

from jinja2 import Undefined

from ..problems import EventmapError

EMPTIABLE = (str, list, dict)


class MappingError(EventmapError):
    """A value could not be produced for this event (bad data, failing filter)."""

    def __init__(self, path, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


class _Undefined:
    """A missing value inside a translated template (Jinja2's Undefined)."""

    __slots__ = ()

    def __repr__(self):
        return "_U"


UNDEFINED = _Undefined()


def is_empty(value) -> bool:
    """The one emptiness rule: null, "", [] and {} are empty; false and 0 are values."""
    return value is None or value is UNDEFINED or (isinstance(value, EMPTIABLE) and len(value) == 0)


def first_value(left, right):
    """``left or right`` in a template: the left side unless it is empty (or undefined)."""
    if is_empty(left) or _undefined(left):
        return right
    return left


def _undefined(value) -> bool:
    return isinstance(value, Undefined)  # what Jinja2's own templates pass for missing data


def is_truthy(value) -> bool:
    """JMESPath truthiness: only null, false and empty string/list/object are false."""
    return not (value is False or is_empty(value))


def describe_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


NAMESPACE = {"MappingError": MappingError, "_U": UNDEFINED, "_EMPTIABLE": EMPTIABLE,
             "describe_type": describe_type, "is_empty": is_empty, "first_value": first_value}
"""The names every generated function may use."""
