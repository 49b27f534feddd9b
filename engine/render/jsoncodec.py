"""JSON in and out with orjson, several times faster than ``json``.

Why: parsing and serialising are a large share of the work per event.

* ``loads`` gives exactly what ``json.loads`` gives. orjson is strict RFC
  8259; ``json.loads`` also takes NaN, Infinity, lone surrogates and integers
  of any size (orjson reads those beyond 64 bits as floats), and words its own
  errors. Whatever orjson refuses, and any text with a run of 19 digits, goes
  to ``json.loads``.
* ``dumps`` writes what ``json.dumps(..., ensure_ascii=False,
  separators=(",", ":"))`` writes (every fixture is checked byte for byte)
  except in two cases, both on purpose: NaN and Infinity become ``null``, as
  in JavaScript's ``JSON.stringify`` (``json.dumps`` writes ``NaN``, which is
  not JSON and no vendor parses), and floats below 1e-4 are spelt as
  JavaScript spells them, ``0.00001`` and ``1e-7`` rather than ``1e-05`` and
  ``1e-07`` (the same numbers). Scanning every body for those cases cost
  more than writing it. What orjson refuses (integers beyond 64 bits, keys
  that are not strings, subclasses) is written by ``json.dumps``.
"""
from __future__ import annotations

import json

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

# A run of 19 digits may be an integer past 64 bits. Mapping every digit to "0" and looking for
# nineteen of them is a single C pass each; a regex takes several times as long as orjson's parse.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def loads(text: str | bytes):
    """``json.loads(text)``, faster."""
    try:
        data = text.encode("utf-8") if isinstance(text, str) else text
    except UnicodeEncodeError:  # a lone surrogate: json.loads takes it, orjson does not
        return json.loads(text)
    if _LONG_RUN in data.translate(_DIGITS_AS_ZERO):
        return json.loads(text)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _orjson(value, sort_keys: bool) -> bytes | None:
    try:
        return orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: let json raise or write it its own way
        return None


def dumps_bytes(value, sort_keys: bool = False) -> bytes:
    """Compact JSON as UTF-8 (see the module docstring for how it compares with ``json.dumps``)."""
    data = _orjson(value, sort_keys)
    if data is None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")
    return data


def dumps(value, sort_keys: bool = False, allow_nan: bool = True) -> str:
    """``dumps_bytes`` as text; ``allow_nan=False`` raises ValueError for NaN and Infinity, as json does."""
    data = _orjson(value, sort_keys)
    if data is None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=allow_nan)
    if not allow_nan and b"null" in data:  # orjson wrote NaN as null: only json can tell, by raising
        json.dumps(value, allow_nan=False)
    return data.decode("utf-8")
