"""Check Segment calls against the JSON Schemas in ``schemas/``.

The schemas are the single statement of the Segment spec; this module only
compiles them once and turns jsonschema's errors into short sentences with a
dotted JSON path, so callers get :class:`Problem` data and never a traceback.

Two validators read the same schemas. jsonschema-rs (compiled, Draft 2020-12
with $refs between files, our date-time check) answers "is this event valid?"
for every event, about fifteen times faster; jsonschema explains, with every
error, only the events that fail. Anything jsonschema-rs cannot take (a value
that is not JSON, say) goes to jsonschema, so decisions are jsonschema's.
jsonschema is imported, and its validators built, when the first event fails:
a command that renders valid events never loads it (a fifth of its start-up).
"""
from __future__ import annotations

import json
import pathlib
import re
from datetime import datetime
from functools import cache, cached_property

import jsonschema_rs

from ..paths import SCHEMA_DIR
from ..problems import ConfigError, Problem

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_TYPE_LIST = ", ".join(CALL_TYPES)


def _is_datetime(value: object) -> bool:
    """ISO-8601 date-time with a time part; 'Z' is normalised for fromisoformat.

    Written here rather than relying on jsonschema's default checker, which
    silently passes everything when the optional rfc3339 package is absent.
    """
    if not isinstance(value, str):
        return True  # "type" reports non-strings
    if len(value) < 11 or value[10] not in "Tt ":
        return False  # a bare date is not a date-time
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@cache
def _formats():
    """jsonschema's format checker with our date-time check only."""
    from jsonschema import FormatChecker
    formats = FormatChecker(formats=())
    formats.checks("date-time")(_is_datetime)
    return formats


def _json_type(value: object) -> str:
    """The JSON name of a Python value, with its article, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a Python {type(value).__name__}"  # not JSON at all


def _expected(types: str | list) -> str:
    """['string', 'null'] -> 'a string or null', the wording of the 'type' rule."""
    names = {"object": "an object", "array": "an array", "string": "a string", "number": "a number",
             "integer": "an integer", "boolean": "a boolean", "null": "null"}
    words = [names.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def format_path(parts) -> str:
    """['properties', 'products', 2, 'price'] -> 'properties.products[2].price'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not isinstance(part, str) or "." in part or "[" in part:  # keep the path unambiguous
            out += f"[{json.dumps(part)}]"
        else:
            out += f".{part}" if out else part
    return out


_MISSING = object()


def _type_message(value: object) -> str:
    """The one message for a missing or unknown call type: no schema can be picked."""
    if value is _MISSING:
        return f"'type' is required; expected one of {_TYPE_LIST}"
    shown = f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)
    return f"{shown} is not a call type; expected one of {_TYPE_LIST}"


def _sentences(error, kind: str) -> list[tuple[list, str, str]]:
    """(path parts, message, rule) for one jsonschema error, in eventmap's wording; the rule is the
    JSON Schema keyword that failed (the innermost one, for anyOf and oneOf)."""
    parts, rule, value, inst = list(error.absolute_path), error.validator, error.validator_value, error.instance
    key = parts[-1] if parts and isinstance(parts[-1], str) else (format_path(parts) or "value")
    if rule == "required":  # only a batch item requires 'type'
        return [(parts + [k], _type_message(_MISSING) if k == "type" else f"{kind}: '{k}' is required", rule)
                for k in value if k not in inst]
    if rule in ("anyOf", "oneOf"):
        if all("required" in branch for branch in value):  # "this or that is required"
            keys = " or ".join(f"'{b['required'][0]}'" for b in value)
            return [(parts, f"{kind}: {keys} is required", "required")]
        from jsonschema.exceptions import best_match
        best = best_match(error.context)
        return _sentences(best, kind) if best else [(parts, f"{key} matches none of the allowed shapes", rule)]
    if rule == "additionalProperties" and value is False and isinstance(inst, dict):
        declared = error.schema.get("properties", {})
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [k for k in inst if k not in declared and not any(re.search(p, k) for p in patterns)]
        allowed = f" (expected one of: {', '.join(declared)})" if declared else ""
        return [(parts + [k], f"'{k}' is not an allowed property{allowed}", rule) for k in extra]
    return [(parts, _message(rule, value, inst, key), rule)]


def _message(rule: str, value, inst, key: str) -> str:
    """The sentence for one failed keyword that names a single place."""
    if rule == "type":
        return f"expected {_expected(value)}, got {_json_type(inst)}"
    if rule == "format":
        what = "an ISO-8601 date-time" if value == "date-time" else f"a valid {value}"
        return f"'{inst}' is not {what}"
    if rule == "maxLength":
        return f"{key} is {len(inst)} characters; at most {value} are allowed"
    if rule == "minLength":
        if value == 1:
            return f"{key} must not be empty"
        return f"{key} is {len(inst)} characters; at least {value} are required"
    if rule == "maxItems":
        return f"{key} has {len(inst)} items; at most {value} are allowed"
    if rule == "minItems":
        return f"{key} has {len(inst)} items; at least {value} are required"
    if rule == "enum" and value == list(CALL_TYPES):
        return _type_message(inst)
    if rule in ("const", "enum"):
        allowed = ", ".join(json.dumps(v) for v in ([value] if rule == "const" else value))
        return f"expected {allowed}, got {json.dumps(inst, default=str)}"
    if rule in _BOUNDS:
        return f"expected a number {_BOUNDS[rule]} {value}, got {json.dumps(inst, default=str)}"
    if rule == "pattern":
        return f"{json.dumps(inst, default=str)} does not match the pattern {value}"
    return f"{key} does not satisfy the '{rule}' rule"


_BOUNDS = {"minimum": "of at least", "maximum": "of at most", "exclusiveMinimum": "above",
           "exclusiveMaximum": "below", "multipleOf": "that is a multiple of"}


def explain(validator, instance, kind_at) -> list[tuple[list, str, str]]:
    """(path parts, message, rule) for every error ``validator`` (jsonschema's) finds in ``instance``, sorted
    by path, each (path, message) once; ``kind_at(parts)`` names what a 'required' message is about."""
    found: dict[tuple, tuple[list, str]] = {}
    for error in validator.iter_errors(instance):
        for where, message, rule in _sentences(error, kind_at(list(error.absolute_path))):
            found.setdefault((format_path(where), message), (where, rule))
    ordered = sorted(found.items(), key=lambda item: (_sort_key(item[1][0]), item[0][1]))
    return [(where, message, rule) for (_, message), (where, rule) in ordered]


def _valid(fast, instance) -> bool:
    """jsonschema-rs's yes; False (ask jsonschema) for anything it cannot read, such as non-JSON values."""
    try:
        return fast.is_valid(instance)
    except Exception:  # noqa: BLE001 - a value it cannot convert, or a callback that raised: ask jsonschema
        return False


def _sort_key(parts: list) -> tuple:
    """Sort paths numerically within arrays (batch[2] before batch[10])."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in parts)


class EventValidator:
    """Validates single calls and batch envelopes; schemas compile once here."""

    def __init__(self, schema_dir: pathlib.Path | None = None):
        schema_dir = pathlib.Path(schema_dir) if schema_dir else SCHEMA_DIR
        try:
            # Only our own files: other schemas in the folder are not ours to load.
            self._schemas = schemas = {name: json.loads((schema_dir / f"{name}.schema.json").read_text())
                                       for name in ("common", *CALL_TYPES, "batch")}
            self._fast = {}
            self._ids = {name: schema["$id"] for name, schema in schemas.items()}
            self._fast_registry = fast_registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas.values()])
            for name in (*CALL_TYPES, "batch"):
                schema = schemas[name]
                jsonschema_rs.meta.validate(schema)   # a broken schema is refused here, as check_schema would
                self._fast[name] = jsonschema_rs.Draft202012Validator(
                    schema, registry=fast_registry, formats={"date-time": _is_datetime}, validate_formats=True)
        except (OSError, ValueError, KeyError, jsonschema_rs.ReferencingError) as exc:
            raise ConfigError([Problem("", f"cannot load Segment schemas: {exc}", file=str(schema_dir))]) from exc

    @cached_property
    def _validators(self) -> dict:
        """jsonschema's validators, which explain failing events: made when the first one fails."""
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in self._schemas.values())
        return {name: Draft202012Validator(self._schemas[name], registry=registry, format_checker=_formats())
                for name in (*CALL_TYPES, "batch")}

    def check(self, event) -> list[Problem]:
        """Every violation of one call, sorted by path; [] if valid."""
        if not isinstance(event, dict):
            return [Problem("", f"expected an object, got {_json_type(event)}")]
        kind = event.get("type", _MISSING)
        if kind not in CALL_TYPES:
            return [Problem("type", _type_message(kind))]
        if _valid(self._fast[kind], event):
            return []
        return self._run(self._validators[kind], event, lambda parts: kind)

    def compiled(self, kind: str):
        """The compiled validator of one call type, for callers that ask "is it valid?" themselves.

        Its ``is_valid`` may raise for what it cannot read (a value that is not JSON): ask ``check`` then.
        """
        return self._fast[kind]

    def compiled_with(self, kind: str, extra: dict):
        """A compiled validator that holds when ``kind``'s schema and ``extra`` both hold.

        For checks that ride along with the Segment schema, so a clean event costs one call.
        """
        return jsonschema_rs.Draft202012Validator({"allOf": [{"$ref": self._ids[kind]}, extra]},
                                                  registry=self._fast_registry, formats={"date-time": _is_datetime},
                                                  validate_formats=True)

    def check_batch(self, envelope) -> list[Problem]:
        """The envelope and each item; item paths look like batch[3].event."""
        if not isinstance(envelope, dict):
            return [Problem("", f"expected an object, got {_json_type(envelope)}")]
        if _valid(self._fast["batch"], envelope):
            return []

        def kind_at(parts):
            """An item's problems are worded with the item's own type."""
            if len(parts) >= 2 and parts[0] == "batch" and isinstance(parts[1], int):
                item = envelope["batch"][parts[1]]
                return item.get("type") if isinstance(item, dict) else "batch"
            return "batch"
        return self._run(self._validators["batch"], envelope, kind_at)

    @staticmethod
    def _run(validator, instance, kind_at) -> list[Problem]:
        from referencing.exceptions import Unresolvable
        try:
            return [Problem(format_path(where), message) for where, message, _ in explain(validator, instance, kind_at)]
        except Unresolvable as exc:  # a broken schema, not bad data: still no traceback
            return [Problem("", f"cannot validate: {exc}")]
