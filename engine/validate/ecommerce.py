"""Lint track calls against Segment's ecommerce v2 spec.

Only warnings: the spec names semantic properties but Segment accepts any
payload, so a mistyped ``price`` or a misspelt ``Order Completed`` is worth
telling the user about, never worth rejecting the event for.

Every track call passes through here, so the spec is turned once per event
name into a :class:`_Rules` of plain type sets; a call whose values have the
spec'd JSON types costs a few set lookups.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any

from engine.paths import SCHEMA_DIR
from engine.problems import Problem
from engine.validate.events import CALL_TYPES, _expected, _json_type

# JSON type name -> the Python types a parsed JSON value of that type has
_PYTHON_TYPES = {"string": (str,), "number": (int, float), "integer": (int,), "array": (list,),
                 "object": (dict,), "boolean": (bool,)}


@functools.lru_cache(maxsize=1)
def _spec() -> dict:
    """schemas/ecommerce-v2.json, read once, plus a name index for near misses."""
    spec = json.loads((SCHEMA_DIR / "ecommerce-v2.json").read_text())
    spec["by_key"] = {_name_key(name): name for name in spec["events"]}
    return spec


def _name_key(name: str) -> str:
    """'Order_Completed', 'order completed', 'OrderCompleted' -> 'ordercompleted'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _has_type(value, types) -> bool:
    """The JSON Schema meaning of ``type`` (an integral float is an integer; a bool is not a number)."""
    for t in [types] if isinstance(types, str) else types:
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t == "integer" and not isinstance(value, bool) and (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return True
        if {"string": str, "array": list, "object": dict, "boolean": bool}.get(t) is type(value):
            return True
    return False


class _Fields:
    """Spec'd property types of one object, as (key, exact Python types, JSON types) triples."""

    __slots__ = ("checks",)

    def __init__(self, fields: dict):
        self.checks = [(key, frozenset(t for name in ([types] if isinstance(types, str) else types)
                                       for t in _PYTHON_TYPES[name]), types)
                       for key, types in fields.items()]

    def problems(self, values: dict, path: str) -> list[Problem]:
        """A warning per spec'd field present with the wrong JSON type; null counts as absent."""
        found = []
        for key, exact, types in self.checks:
            value = values.get(key)
            # the exact-type test settles almost every value; _has_type decides the rest (1.0 as an integer)
            if value is not None and type(value) not in exact and not _has_type(value, types):
                found.append(Problem(f"{path}.{key}", f"expected {_expected(types)}, got {_json_type(value)}",
                                     severity="warning"))
        return found


class _Rules:
    """What the spec says about one ecommerce event name."""

    __slots__ = ("name", "fields", "product", "has_products", "recommended")

    def __init__(self, name: str, spec: dict):
        rules = spec["events"][name]
        merged = {**spec["product"], **rules["properties"]} if rules.get("product_fields") else rules["properties"]
        self.name = name
        self.fields = _Fields(merged)
        self.product = _Fields(spec["product"])
        self.has_products = merged.get("products") == "array"
        self.recommended = list(rules.get("recommended", {}).items())

    def schema(self) -> dict:
        """A JSON Schema for the whole call that holds exactly when ``problems`` finds nothing.

        Only ever trusted when it holds; a call it refuses is linted by ``problems``.
        """
        def typed(types) -> dict:
            return {"type": [*([types] if isinstance(types, str) else types), "null"]}  # null counts as absent
        props = {key: typed(types) for key, _, types in self.fields.checks}
        if self.has_products:
            props["products"] = {"type": ["array", "null"], "items": {
                "type": "object", "properties": {key: typed(types) for key, _, types in self.product.checks}}}
        for key, _ in self.recommended:
            props.setdefault(key, {})["not"] = {"type": "null"}
        inner = {"type": "object", "properties": props, "required": [key for key, _ in self.recommended]}
        return {"properties": {"properties": inner}, "required": ["properties"] if self.recommended else []}

    def problems(self, props: dict) -> list[Problem]:
        problems = self.fields.problems(props, "properties")
        products = props.get("products")
        if self.has_products and isinstance(products, list):
            for i, item in enumerate(products):
                where = f"properties.products[{i}]"
                if isinstance(item, dict):
                    problems += self.product.problems(item, where)
                else:
                    problems.append(Problem(where, f"expected an object, got {_json_type(item)}",
                                            severity="warning"))
        for key, who in self.recommended:
            if props.get(key) is None:
                problems.append(Problem(f"properties.{key}", f"{self.name}: {who} recommends an '{key}' property",
                                        severity="warning"))
        return problems


_NAMES_KEPT = 4096


@functools.lru_cache(maxsize=_NAMES_KEPT)
def _rules_for(name: str) -> _Rules | Problem | None:
    """The rules for a spec'd name, a near-miss warning for a misspelt one, None for any other name.

    Cached per name: a stream repeats a few hundred event names, and the near-miss test is a regex.
    """
    spec = _spec()
    if name in spec["events"]:
        return _Rules(name, spec)
    match = spec["by_key"].get(_name_key(name))
    if match is None:
        return None
    return Problem("event", f"'{name}' is not a spec'd ecommerce event name; did you mean '{match}'?",
                   severity="warning")


def lint_ecommerce(event) -> list[Problem]:
    """Warnings for one track call named like an ecommerce v2 event; [] otherwise."""
    if not isinstance(event, dict) or event.get("type", "track") != "track":
        return []
    name = event.get("event")
    if not isinstance(name, str):
        return []
    rules = _rules_for(name)
    if rules is None:
        return []
    if isinstance(rules, Problem):
        return [rules]
    props = event.get("properties")
    return rules.problems(props if isinstance(props, dict) else {})  # a non-object is the validator's error


class SegmentCheck:
    """Schema errors and ecommerce warnings for one call, in one compiled-validator call when it has neither.

    A track call named like a spec'd ecommerce event is checked against the
    Segment schema and its ecommerce rules together (``_Rules.schema``); only
    a call that fails that is explained by the validator and ``lint_ecommerce``.
    Every call passes through ``check``, so it reaches the compiled validator
    with as few Python steps as it can.
    """

    def __init__(self, validator):
        self.validator = validator
        self._by_type = {kind: validator.compiled(kind) for kind in CALL_TYPES if kind != "track"}
        # track: one compiled check per event name; False for a near miss (its warning needs the slow path)
        self._by_name: dict[str, Any] = {}
        self._by_rules: dict[str, Any] = {}  # one per spec'd event name (a few dozen)

    def check(self, event) -> tuple[list[Problem], list[Problem]]:
        """(errors, warnings); warnings only for a call without errors."""
        if isinstance(event, dict):
            kind = event.get("type")
            if kind == "track":
                name = event.get("event")
                compiled: Any = False
                if isinstance(name, str):
                    compiled = self._by_name.get(name)
                    if compiled is None:
                        compiled = self._for_name(name)
            else:
                compiled = self._by_type.get(kind) if isinstance(kind, str) else False
            if compiled:
                try:
                    valid = compiled.is_valid(event)
                except Exception:  # noqa: BLE001 - a value it cannot read (not JSON): the full validator explains it
                    valid = False
                if valid:
                    return [], []
        errors = self.validator.check(event)
        return errors, ([] if errors else lint_ecommerce(event))

    def _for_name(self, name: str):
        """The compiled check for track calls named ``name``, kept for the next one."""
        rules = _rules_for(name)
        if rules is None:
            compiled = self.validator.compiled("track")  # no ecommerce name: nothing to lint
        elif isinstance(rules, _Rules):
            compiled = self._by_rules.get(rules.name)
            if compiled is None:
                compiled = self._by_rules[rules.name] = self.validator.compiled_with("track", rules.schema())
        else:
            compiled = False  # a near miss: its warning comes from lint_ecommerce
        if len(self._by_name) >= _NAMES_KEPT:  # a stream of made-up names must not grow this for ever
            self._by_name.clear()
        self._by_name[name] = compiled
        return compiled
