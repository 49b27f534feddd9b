"""JSON in and out with orjson, byte for byte what the standard library gives.

Why: parsing and serialising are a large share of the work per event, and
orjson does both several times faster than ``json``. Wherever the two could
disagree, the standard library decides:

* ``loads``: orjson is strict RFC 8259; ``json.loads`` also takes NaN,
  Infinity, lone surrogates and integers of any size (orjson reads those
  beyond 64 bits as floats), and words its own errors. Whatever orjson
  refuses, and any text with a run of 19 digits, goes to ``json.loads``.
* ``dumps``: orjson refuses integers beyond 64 bits, non-string keys,
  subclasses and datetimes (the standard library raises for the latter), and
  writes NaN as null and some floats differently (``1e-05`` vs ``0.00001``).
  Refusals, and any output with ``null`` or a number that has an exponent or
  starts ``0.0000``, are written again by ``json.dumps``; every other float is
  formatted alike (shortest round-trip repr), as the test suite checks.
"""
from __future__ import annotations

import json
import re

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# null may be a NaN; a number token with an exponent or a tiny fraction may be formatted otherwise
_SUSPECT = re.compile(rb"null|(?:^|[:,\[])-?(?:\d+(?:\.\d+)?[eE]|0\.0000)")
# orjson reads integers beyond 64 bits as floats; json keeps them exact (19 digits may already be past -2**63)
_LONG_NUMBER = re.compile(r"\d{19}")


def loads(text: str):
    """``json.loads(text)``, faster."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps_bytes(value, sort_keys: bool = False) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=...).encode()``, faster."""
    try:
        data = orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: let json raise or write it its own way
        data = None
    if data is None or _SUSPECT.search(data):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")
    return data


def dumps(value, sort_keys: bool = False, allow_nan: bool = True) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=..., allow_nan=...)``, faster."""
    try:
        data = orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS)
    except TypeError:
        data = None
    if data is None or _SUSPECT.search(data):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=allow_nan)
    return data.decode("utf-8")
