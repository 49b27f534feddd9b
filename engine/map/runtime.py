"""What generated mapping code refers to at run time, defined once.

Why: the mapping language has one semantics, the Python that map/codegen.py
writes. The rules that code (and anything else that reads mapped values: the
``required`` check, sources, routes) applies live here, so each is written once:

* **empty** means null, ``""``, ``[]`` and ``{}``; ``false`` and ``0`` are values.
  Fallbacks, ``@default``, the ``default`` filter, ``required``, ``@drop_empty``
  and the template ``or`` after a data value all use it;
* **truthy** (``@if``, ``when``, ``!``, and in templates ``not``, ``and``, ``if``
  and ``or`` in a condition) is JMESPath's: empty or ``false`` is false, ``0`` is true;
* **JSON data** is what a value may be: null, true/false, numbers, text, lists and
  objects with text keys. Jinja2's Undefined (missing data) is null at any depth;
  anything else a template or a function makes (a generator, a range) is refused
  (``json_data``), so no Python or Jinja2 object reaches a request or a log line.
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


class Scope:
    """What one evaluation can see: the event, the settings, vars, and the current item."""

    __slots__ = ("event", "settings", "vars", "item", "in_item")

    def __init__(self, event, settings, vars=None, item=None, in_item=False):
        self.event = event
        self.settings = settings
        self.vars = vars if vars is not None else {}
        self.item = item
        self.in_item = in_item

    def for_item(self, item) -> Scope:
        return Scope(self.event, self.settings, self.vars, item, True)

    def set_var(self, name, value) -> None:
        self.vars[name] = value


class _Undefined:
    """A missing value inside a translated template (Jinja2's Undefined)."""

    __slots__ = ()

    def __repr__(self):
        return "_U"


UNDEFINED = _Undefined()


def is_empty(value) -> bool:
    """The one emptiness rule: null, "", [] and {} are empty; false and 0 are values."""
    return value is None or value is UNDEFINED or (not value and isinstance(value, EMPTIABLE))


def is_missing(value) -> bool:
    """Null, or missing data (Jinja2's Undefined, or _U in translated templates)."""
    return value is None or value is UNDEFINED or isinstance(value, Undefined)


def is_filled(value) -> bool:
    """Not empty, Jinja2's Undefined included: what the template ``or`` after a data value keeps."""
    return not (is_empty(value) or isinstance(value, Undefined))


def is_truthy(value) -> bool:
    """JMESPath truthiness: only null, missing, false and empty string/list/object are false; 0 is true."""
    return not (value is False or is_empty(value) or isinstance(value, Undefined))


class NotJSON(EventmapError, ValueError):
    """A template or function made a value that is not JSON data (worded as that template's failure)."""


_SCALARS = frozenset({str, int, bool, type(None)})


def json_data(value):
    """``value`` as JSON data: Undefined becomes null at any depth; other non-JSON values raise NotJSON.

    Returns ``value`` itself when it is already plain (the usual case: checked, not copied).
    """
    return value if _plain(value) else _converted(value)


def _plain(value) -> bool:
    kind = value.__class__
    if kind in _SCALARS:
        return True
    if kind is float:
        return value - value == 0  # false for inf and nan
    if kind is dict:
        return all(k.__class__ is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def _converted(value):
    kind = value.__class__
    if kind in _SCALARS:
        return value
    if kind is float:
        if value - value != 0:
            raise NotJSON(f"made the number {value!r}, which JSON cannot carry")
        return value
    if kind is dict:
        return {_json_key(k): _converted(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_converted(v) for v in value]
    if value is UNDEFINED or isinstance(value, Undefined):
        return None
    if isinstance(value, (str, int, float)):  # Markup, an IntEnum...: the plain value
        return _converted((str if isinstance(value, str) else float if isinstance(value, float) else int)(value))
    raise NotJSON(f"made a Python {type(value).__name__}, which is not JSON data (null, true/false, a number, text, "
                  f"a list or an object){'; add | list to make a list' if hasattr(value, '__iter__') else ''}")


def _json_key(key) -> str:
    if isinstance(key, str):
        return str(key)
    raise NotJSON(f"made an object with the key {key!r}; object keys must be text")


def describe_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


NAMESPACE = {"MappingError": MappingError, "_U": UNDEFINED, "_EMPTIABLE": EMPTIABLE, "_JSON_SCALARS": _SCALARS,
             "describe_type": describe_type, "is_empty": is_empty, "json_data": json_data}
"""The names every generated function may use."""
