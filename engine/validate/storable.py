"""What the store can hold: the one definition every intake path checks an event against.

Python's ``json`` reads things no store keeps the same way: lone surrogates
(``"\\ud800"``), which are not Unicode and cannot be written as UTF-8 (SQLite
and PostgreSQL both refuse them), and NaN, Infinity and numbers past the
double range (``1e400``), which are not JSON (PostgreSQL refuses them; SQLite
would keep text that is not JSON). One such value must not fail the write of
a whole batch: the event is rejected on its own, and what is kept of it is a
safe copy with the bad parts replaced, each named by its JSON path.
"""
from __future__ import annotations

import math
from typing import Any

from .. import jsoncodec
from ..problems import Problem
from .events import format_path

REPLACEMENT = "\ufffd"  # what a lone surrogate becomes in the safe copy
_JS_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def problems(value) -> list[Problem]:
    """Every part of ``value`` the store cannot hold, by JSON path; empty for nearly every event.

    The fast path writes the value as JSON in UTF-8 (orjson, a microsecond or two), which
    raises for a lone surrogate; NaN and Infinity come out as null (or as NaN when json
    wrote it), so only a value whose text has those words is written again, strictly.
    Only a value that fails is walked for the paths.
    """
    try:
        data = jsoncodec.dumps_bytes(value)
        if b"null" in data or b"NaN" in data or b"Infinity" in data:
            jsoncodec.dumps(value, allow_nan=False)
        return []
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError) as exc:
        found = _walk(value)[1]
        return found or [Problem("", f"the event cannot be stored: {exc}")]


def safe_copy(value):
    """``value`` with every lone surrogate replaced by U+FFFD and every NaN or infinite number by null."""
    return _walk(value)[0]


def safe_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, for ids and messages that go to the store or a client."""
    if not _has_surrogate(text):
        return text
    return "".join(REPLACEMENT if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _walk(value) -> tuple[object, list[Problem]]:
    """(safe copy, problems), without recursion: events nest up to 100 levels, configurations more."""
    found: list[Problem] = []
    root: list = [None]
    stack: list[tuple[object, Any, object, tuple]] = [(value, root, 0, ())]
    while stack:
        item, parent, slot, path = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                found.append(Problem(format_path(path), "the text is not valid Unicode (a lone surrogate such as \\ud800); "
                                           "expected UTF-16 surrogates in pairs"))
                item = safe_text(item)
            parent[slot] = item
        elif isinstance(item, float) and not math.isfinite(item):
            found.append(Problem(format_path(path), f"{_JS_NAMES[repr(item)]} is not a number JSON can carry: expected a "
                                       "finite number (1e400 and beyond read as Infinity)"))
            parent[slot] = None
        elif isinstance(item, dict):
            copy: dict = {}
            parent[slot] = copy
            keys = []
            for key in item:
                safe_key = safe_text(key) if isinstance(key, str) else key
                child = path + (safe_key,)
                if safe_key is not key:
                    found.append(Problem(format_path(child), "the key is not valid Unicode (a lone surrogate such as \\ud800); "
                                                "expected UTF-16 surrogates in pairs"))
                keys.append((key, safe_key, child))
            for _key, safe_key, _child_path in keys:
                copy[safe_key] = None  # keys in their order
            for key, safe_key, child in reversed(keys):
                stack.append((item[key], copy, safe_key, child))
        elif isinstance(item, list):
            copy_list: list = [None] * len(item)
            parent[slot] = copy_list
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], copy_list, index, path + (index,)))
        else:
            parent[slot] = item
    return root[0], found
