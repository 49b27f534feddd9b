"""Check a YAML document against a JSON Schema, in words a person can act on.

jsonschema's own messages quote whole instances; ours say what was expected
at which key, and the YamlDocument supplies the line.
"""
from __future__ import annotations

import json
from functools import cache

import jsonschema_rs
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ..paths import SCHEMA_DIR
from ..problems import Problem
from .yaml_source import YamlDocument

TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "a whole number",
              "number": "a number", "boolean": "true or false", "null": "null"}


@cache
def schema_registry() -> Registry:
    """Every shipped schema by its $id, so one file can $ref another without any network."""
    schemas = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(SCHEMA_DIR.glob("*.schema.json"))]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


@cache
def schema_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=schema_registry())


@cache
def fast_validator(name: str):
    """jsonschema-rs on the same schema: a quick yes for the usual valid file (loading 300 files in < 1 s)."""
    schemas = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(SCHEMA_DIR.glob("*.schema.json"))]
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas])
    return jsonschema_rs.Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8")),
                                              registry=registry)


def _surely_valid(data, schema_name: str) -> bool:
    try:
        return fast_validator(schema_name).is_valid(data)
    except ValueError:  # YAML keys that are not text (on_status: {404: ...}), which JSON Schema sees as text
        try:
            return fast_validator(schema_name).is_valid(_text_keys(data))
        except Exception:  # noqa: BLE001 - values that are not JSON (dates...): jsonschema decides
            return False
    except Exception:  # noqa: BLE001 - YAML values that are not JSON (dates...): jsonschema decides
        return False


def _text_keys(value):
    """``value`` with every mapping key as text, as jsonschema reads a key such as YAML's 404."""
    if isinstance(value, dict):
        return {str(key): _text_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_text_keys(item) for item in value]
    return value


def check_against_schema(doc: YamlDocument, schema_name: str) -> list[Problem]:
    if _surely_valid(doc.data, schema_name):
        return []  # jsonschema would find nothing; it explains only files that fail
    validator = schema_validator(schema_name)
    problems = []
    for error in validator.iter_errors(doc.data):
        # Mapping-language values are checked by the compiler, with better words.
        if _in_mapping_value(error):
            continue
        path, message = _words(error)
        problems.append(doc.problem(path, message))
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


def _in_mapping_value(error) -> bool:
    """Errors inside a mapping-language value: the compiler reports those, with better words."""
    while error is not None:
        if str(error.schema.get("description", "")).startswith("A mapping-language value") if isinstance(error.schema, dict) else False:
            return True
        error = error.parent
    return False


def _words(error) -> tuple[tuple, str]:
    path = tuple(error.absolute_path)
    kind, value, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.schema_path and isinstance(instance, str):
        # jsonschema reports a bad key at its parent; point at the key itself
        expected = value if kind == "enum" else error.schema.get("pattern", value)
        return path + (instance,), f"'{instance}' is not allowed here (expected one of: {', '.join(expected)})" \
            if kind == "enum" else f"'{instance}' is not allowed here (expected {expected})"
    if kind == "required":
        missing = [key for key in value if isinstance(instance, dict) and key not in instance]
        return path, f"'{missing[0] if missing else value}' is required"
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [key for key in instance if key not in error.schema.get("properties", {})]
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return path + (extra[0],), f"unknown key '{extra[0]}'{hint}"
    if kind == "propertyNames":
        bad = next((key for key in instance if not _valid_name(error, key)), "?")
        expected = value.get("enum") or value.get("pattern")
        return path + (bad,), f"'{bad}' is not allowed here (expected {expected})"
    if kind == "type":
        wanted = value if isinstance(value, list) else [value]
        return path, f"expected {' or '.join(str(TYPE_WORDS.get(w, w)) for w in wanted)}, got {_type_of(instance)}"
    if kind in ("enum", "const"):
        options = value if kind == "enum" else [value]
        return path, f"{json.dumps(instance)} is not one of: {', '.join(json.dumps(o) for o in options)}"
    if kind == "oneOf":
        return path, "does not match any allowed form" + (f": {error.schema['description']}" if "description" in error.schema else "")
    if kind == "minLength":
        return path, "must not be empty"
    if kind in ("minimum", "minProperties"):
        return path, f"must be at least {value}" if kind == "minimum" else "must not be empty"
    if kind == "pattern":
        return path, f"{instance!r} does not match {value}"
    return path, error.message


def _valid_name(error, key) -> bool:
    return not any(True for _ in Draft202012Validator(error.validator_value).iter_errors(key))


def _type_of(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    for name, python in (("object", dict), ("array", list), ("string", str), ("null", type(None))):
        if isinstance(value, python):
            return TYPE_WORDS[name]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__
