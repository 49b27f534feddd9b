"""What a sample of events holds: per event, the JSON types seen at each property path and how often.

``eventmap plan infer`` turns a profile into a starting plan (``plan_of``), and
``eventmap plan diff`` compares one with a plan (``differences``): one reading of
traffic for both, so what infer writes is what diff finds nothing against.
Events are filed as a plan files them: a track under its name, identify and
group calls under their traits (``validate.plan``); other calls are not counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .plan import GROUP_TRAITS, IDENTIFY_TRAITS, TrackingPlan

MAX_DEPTH = 32   # deeper values are counted by type only: a plan need not follow a value that deep


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "string"


@dataclass
class Shape:
    """The values seen at one place: how many, their JSON types, an object's keys, an array's items."""

    count: int = 0
    types: dict[str, int] = field(default_factory=dict)
    objects: int = 0                                     # how many of the values were objects
    keys: dict[str, Shape] = field(default_factory=dict)  # per key: the values under it (count: objects having it)
    items: Shape | None = None

    def add(self, value, depth: int = 0) -> None:
        self.count += 1
        kind = json_type(value)
        self.types[kind] = self.types.get(kind, 0) + 1
        if depth >= MAX_DEPTH:
            return
        if isinstance(value, dict):
            self.objects += 1
            for key, item in value.items():
                self.keys.setdefault(str(key), Shape()).add(item, depth + 1)
        elif isinstance(value, list):
            if self.items is None:
                self.items = Shape()
            for item in value:
                self.items.add(item, depth + 1)


@dataclass
class Profile:
    """Events filed by name (a track's, or (identify traits) / (group traits)), each with the shape of its
    properties or traits."""

    events: dict[str, Shape] = field(default_factory=dict)
    seen: int = 0          # events read
    counted: int = 0       # of them, those a plan covers

    def add(self, event) -> None:
        self.seen += 1
        label, value = _filed(event)
        if label is None:
            return
        self.counted += 1
        self.events.setdefault(label, Shape()).add(value if value is not None else {})


def _filed(event) -> tuple[str | None, object]:
    if not isinstance(event, dict):
        return None, None
    kind = event.get("type")
    if kind == "track" and isinstance(event.get("event"), str) and event["event"]:
        return event["event"], event.get("properties")
    if kind == "identify":
        return IDENTIFY_TRAITS, event.get("traits")
    if kind == "group":
        return GROUP_TRAITS, event.get("traits")
    return None, None


# --------------------------------------------------------------------------- infer

def schema_of(shape: Shape) -> dict:
    """A JSON Schema that every value of ``shape`` follows: its types; an object's properties, each required
    when every object had it; an array's items."""
    types = sorted(shape.types)
    if "integer" in types and "number" in types:
        types.remove("integer")   # a number may be whole
    schema: dict = {"type": types[0] if len(types) == 1 else types} if types else {}
    if shape.objects:
        schema["properties"] = {key: schema_of(sub) for key, sub in sorted(shape.keys.items())}
        required = [key for key, sub in sorted(shape.keys.items()) if sub.count == shape.objects]
        if required:
            schema["required"] = required
    if shape.items is not None and shape.items.count:
        schema["items"] = schema_of(shape.items)
    return schema


def plan_of(profile: Profile, name: str) -> dict:
    """A plan file's data (schemas/plan.schema.json) describing every event of ``profile``."""
    plan: dict = {"name": name, "events": {}}
    for label, shape in sorted(profile.events.items()):
        if label == IDENTIFY_TRAITS:
            plan["identify"] = {"traits": schema_of(shape)}
        elif label == GROUP_TRAITS:
            plan["group"] = {"traits": schema_of(shape)}
        else:
            plan["events"][label] = {"properties": schema_of(shape)}
    return plan


# --------------------------------------------------------------------------- diff

@dataclass
class Difference:
    """One thing traffic does that the plan does not describe (or the plan describes that traffic never did)."""

    kind: str          # unplanned event, unplanned property, type differs, not seen
    event: str
    path: str = ""
    seen: int = 0      # events (or values) it concerns
    detail: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "event": self.event, "path": self.path, "seen": self.seen, "detail": self.detail}


UNPLANNED_EVENT, UNPLANNED_PROPERTY, TYPE_DIFFERS, NOT_SEEN = ("unplanned event", "unplanned property",
                                                               "type differs", "not seen")


def differences(profile: Profile, plan: TrackingPlan) -> list[Difference]:
    """Unplanned events, properties the plan never names, types the plan does not allow, and planned events
    the sample never had."""
    found: list[Difference] = []
    parts = {IDENTIFY_TRAITS: plan.identify, GROUP_TRAITS: plan.group}
    for label, shape in sorted(profile.events.items()):
        if label in parts:
            part = parts[label]
        elif label not in plan.events:
            found.append(Difference(UNPLANNED_EVENT, label, "event", shape.count))
            continue
        else:
            part = plan.events[label]
        if part is not None:
            root = part.schema if isinstance(part.schema, dict) else {}
            _compare(part.schema, shape, part.where, label, root, found)
    found += [Difference(NOT_SEEN, name, "event") for name in sorted(plan.events) if name not in profile.events]
    return found


def _compare(schema, shape: Shape, path: str, label: str, root: dict, found: list[Difference]) -> None:
    """Differences at ``path`` (array items as ``[]``) and below."""
    schema = _resolved(schema, root)
    if not isinstance(schema, dict):
        return   # true / false: nothing named, nothing typed
    allowed = _types(schema, root)
    if allowed is not None:
        bad = {kind: n for kind, n in shape.types.items() if not _fits(kind, allowed)}
        if bad:
            seen = ", ".join(f"{kind} ({n})" for kind, n in sorted(bad.items()))
            found.append(Difference(TYPE_DIFFERS, label, path, sum(bad.values()),
                                    f"the plan allows {' or '.join(sorted(allowed))}; traffic had {seen}"))
    if shape.objects:
        named = _properties(schema, root)
        for key, sub in sorted(shape.keys.items()):
            if key in named:
                for branch in named[key]:
                    _compare(branch, sub, _child(path, key), label, root, found)
            else:
                found.append(Difference(UNPLANNED_PROPERTY, label, _child(path, key), sub.count, "not in the plan"))
    if shape.items is not None and shape.items.count:
        for items in _branches(schema, root, "items"):
            _compare(items, shape.items, path + "[]", label, root, found)


def _child(path: str, key: str) -> str:
    return path + (f".{key}" if key and "." not in key and "[" not in key else f"[{json.dumps(key)}]")


def _resolved(schema, root: dict, depth: int = 0):
    """A local $ref ("#/$defs/NAME") replaced by what it points at, merged with the keywords beside it."""
    if not isinstance(schema, dict) or "$ref" not in schema or depth > 16:
        return schema
    target = root
    ref = schema["$ref"]
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {k: v for k, v in schema.items() if k != "$ref"}
    for part in (p for p in ref[1:].split("/") if p):
        target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
    merged = {**_resolved(target, root, depth + 1), **{k: v for k, v in schema.items() if k != "$ref"}} \
        if isinstance(target, dict) else schema
    return merged


def _subschemas(schema: dict, root: dict) -> list:
    """``schema`` and the branches of its allOf, anyOf and oneOf, resolved."""
    found = [schema]
    for keyword in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(keyword) or []:
            branch = _resolved(branch, root)
            if isinstance(branch, dict):
                found += _subschemas(branch, root)
    return found


def _branches(schema: dict, root: dict, keyword: str) -> list:
    return [s[keyword] for s in _subschemas(schema, root) if isinstance(s.get(keyword), (dict, bool))]


def _properties(schema: dict, root: dict) -> dict[str, list]:
    named: dict[str, list] = {}
    for sub in _subschemas(schema, root):
        for key, value in (sub.get("properties") or {}).items():
            named.setdefault(key, []).append(value)
    return named


def _types(schema: dict, root: dict) -> set[str] | None:
    """The JSON types ``schema`` allows, from type, enum and const (and its branches); None: any."""
    allowed: set[str] | None = None
    for sub in _subschemas(schema, root):
        found: set[str] | None = None
        if "type" in sub:
            found = {sub["type"]} if isinstance(sub["type"], str) else set(sub["type"])
        elif "enum" in sub and isinstance(sub["enum"], list):
            found = {json_type(v) for v in sub["enum"]}
        elif "const" in sub:
            found = {json_type(sub["const"])}
        if found is not None:
            allowed = found if allowed is None else allowed | found
    return allowed


def _fits(kind: str, allowed: set[str]) -> bool:
    return kind in allowed or (kind == "integer" and "number" in allowed)
