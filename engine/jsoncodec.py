"""JSON in with msgspec and out with orjson, several times faster than ``json``.

Why: parsing and serialising are a large share of the work per event.

* ``loads`` gives exactly what ``json.loads`` gives. msgspec reads integers
  of any size exactly (orjson reads those beyond 64 bits as floats, and
  guarding against that cost 40% of a parse). What msgspec refuses (NaN,
  Infinity, lone surrogates, floats beyond the double range, integers past
  Python's digit limit, syntax errors) goes to ``json.loads``, which takes
  it or raises its own error, always as ``json.JSONDecodeError``.
* ``dumps`` writes what ``json.dumps(..., ensure_ascii=False,
  separators=(",", ":"))`` writes (every fixture is checked byte for byte)
  except in two cases, both on purpose: NaN and Infinity become ``null``, as
  in JavaScript's ``JSON.stringify`` (``json.dumps`` writes ``NaN``, which is
  not JSON and no vendor parses), and floats below 1e-4 are spelt as
  JavaScript spells them, ``0.00001`` and ``1e-7`` rather than ``1e-05`` and
  ``1e-07`` (the same numbers). Scanning every body for those cases cost
  more than writing it. What orjson refuses (integers beyond 64 bits, keys
  that are not strings, subclasses) is written by ``json.dumps``. orjson,
  not msgspec, writes: msgspec would turn datetimes, UUIDs and dataclasses
  into JSON where ``json.dumps`` raises.
"""
from __future__ import annotations

import json
import sys

import msgspec
import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

_decode = msgspec.json.Decoder().decode
MAX_DEPTH = 100  # levels of nesting an event may have; real ones have a handful


def loads(text: str | bytes):
    """``json.loads(text)``, faster; raises ``json.JSONDecodeError`` for any text it cannot read.

    json.loads itself raises other errors for two kinds of valid JSON Python will not read:
    an integer past Python's digit limit (ValueError) and nesting past the recursion limit
    (RecursionError). Here they are JSONDecodeErrors too, so a caller that reports bad
    lines reports these, instead of stopping with a traceback.
    """
    try:
        return _decode(text)
    except (msgspec.DecodeError, UnicodeError, RecursionError):  # let json take it, or word its error
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError as exc:  # bytes that are not UTF-8
        raise json.JSONDecodeError(f"not UTF-8 text (byte {exc.start})", "", 0) from None
    except ValueError:  # Python's digit limit for int()
        limit = sys.get_int_max_str_digits()
        raise json.JSONDecodeError(f"an integer longer than Python reads (over {limit} digits)", "", 0) from None
    except RecursionError:
        raise _too_deep() from None


def loads_bounded(text: str | bytes):
    """``loads`` for input from outside: JSON nested deeper than ``MAX_DEPTH`` is a JSONDecodeError too.

    Deeper JSON parses, but every recursive step after it (masking secrets, writing
    the outcome, storing it) spends Python's recursion limit of 1,000 frames, and
    one of them would stop mid-event with a traceback. Counting the brackets costs
    about a microsecond per line, so it is done where events come in (batch and
    enqueue lines, the serve API, ``eventmap render``), not on every parse.
    """
    data = loads(text)
    if _openers(text) > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):  # a walk only for bracket-heavy text
        raise _too_deep()
    return data


def _too_deep() -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested deeper than eventmap reads (over {MAX_DEPTH} levels)", "", 0)


def _openers(text: str | bytes) -> int:
    """How many '{' and '[' the text holds (in strings too): nesting can be no deeper."""
    if isinstance(text, str):
        return text.count("{") + text.count("[")
    return text.count(b"{") + text.count(b"[")


def _deeper_than(value, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (the top one is level 1); no recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


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
