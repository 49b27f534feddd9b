"""Lint track calls against Segment's ecommerce v2 spec.

Only warnings: the spec names semantic properties but Segment accepts any
payload, so a mistyped ``price`` or a misspelt ``Order Completed`` is worth
telling the user about, never worth rejecting the event for.
"""
from __future__ import annotations

import functools
import json
import re

from engine.problems import Problem
from engine.paths import SCHEMA_DIR
from engine.validate.events import _expected, _json_type

_SPEC: dict | None = None


def _spec() -> dict:
    """schemas/ecommerce-v2.json, read once, plus a name index for near misses."""
    global _SPEC
    if _SPEC is None:
        spec = json.loads((SCHEMA_DIR / "ecommerce-v2.json").read_text())
        spec["by_key"] = {_name_key(name): name for name in spec["events"]}
        _SPEC = spec
    return _SPEC


def _name_key(name: str) -> str:
    """'Order_Completed', 'order completed', 'OrderCompleted' -> 'ordercompleted'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _has_type(value, types) -> bool:
    for t in [types] if isinstance(types, str) else types:
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t == "integer" and not isinstance(value, bool) and (
                isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            return True
        if {"string": str, "array": list, "object": dict, "boolean": bool}.get(t) is type(value):
            return True
    return False


def _check_fields(values: dict, fields: dict, path: str) -> list[Problem]:
    """A warning per spec'd field present with the wrong JSON type; null counts as absent."""
    return [Problem(f"{path}.{key}", f"expected {_expected(types)}, got {_json_type(values[key])}",
                    severity="warning")
            for key, types in fields.items()
            if values.get(key) is not None and not _has_type(values[key], types)]


@functools.lru_cache(maxsize=None)
def _fields(name: str) -> dict:
    """The spec'd property types of one ecommerce event, merged once rather than per event."""
    spec = _spec()
    rules = spec["events"][name]
    return {**spec["product"], **rules["properties"]} if rules.get("product_fields") else rules["properties"]


def lint_ecommerce(event) -> list[Problem]:
    """Warnings for one track call named like an ecommerce v2 event; [] otherwise."""
    if not isinstance(event, dict) or event.get("type", "track") != "track":
        return []
    name = event.get("event")
    if not isinstance(name, str):
        return []
    spec = _spec()
    if name not in spec["events"]:
        match = spec["by_key"].get(_name_key(name))
        if match is None:
            return []
        return [Problem("event", f"'{name}' is not a spec'd ecommerce event name; did you mean '{match}'?",
                        severity="warning")]
    rules = spec["events"][name]
    props = event.get("properties")
    props = props if isinstance(props, dict) else {}  # a non-object is the validator's error
    fields = _fields(name)
    problems = _check_fields(props, fields, "properties")
    products = props.get("products")
    if fields.get("products") == "array" and isinstance(products, list):
        for i, item in enumerate(products):
            where = f"properties.products[{i}]"
            if isinstance(item, dict):
                problems += _check_fields(item, spec["product"], where)
            else:
                problems.append(Problem(where, f"expected an object, got {_json_type(item)}",
                                        severity="warning"))
    for key, who in rules.get("recommended", {}).items():
        if props.get(key) is None:
            problems.append(Problem(f"properties.{key}", f"{name}: {who} recommends an '{key}' property",
                                    severity="warning"))
    return problems
