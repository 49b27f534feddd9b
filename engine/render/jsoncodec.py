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
  writes NaN as null and floats below 1e-4 differently (``0.00001`` and
  ``1e-7`` for ``1e-05`` and ``1e-07``). Refusals, and any output with
  ``null``, ``0.0000`` or a negative exponent, are written again by
  ``json.dumps``; every other float is formatted alike (shortest round-trip
  repr), as the test suite checks.
"""
from __future__ import annotations

import json
import re

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Where orjson's text may differ: null (may be a NaN), and numbers below 1e-4, which orjson writes as
# 0.00001 or 1e-7 where json writes 1e-05 and 1e-07 (all larger floats are formatted alike; the tests fuzz it).
_NEGATIVE_EXPONENT = re.compile(rb"\de-\d")


def _suspect(data: bytes) -> bool:
    """Plain substring tests first (fast); the regex only when an 'e-' is there at all."""
    return b"null" in data or b"0.0000" in data or (b"e-" in data and _NEGATIVE_EXPONENT.search(data) is not None)
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
    if data is None or _suspect(data):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")
    return data


def dumps(value, sort_keys: bool = False, allow_nan: bool = True) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=..., allow_nan=...)``, faster."""
    try:
        data = orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS)
    except TypeError:
        data = None
    if data is None or _suspect(data):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=allow_nan)
    return data.decode("utf-8")
