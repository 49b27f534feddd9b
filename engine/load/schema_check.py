"""Check a YAML document against a JSON Schema, in words a person can act on.

jsonschema's own messages quote whole instances; ours say what was expected
at which key, and the YamlDocument supplies the line.

``check_for_compiling`` also hands the compiler what it can still compile: the
document with each part the schema refused left out, so that one run of
``eventmap validate`` reports a misspelt key and an unknown filter in the same
file, and the compiler never sees a shape it was not written for.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import replace as replaced
from functools import cache

import jsonschema_rs

from ..paths import SCHEMA_DIR
from ..problems import Problem, bare_yaml_key
from .yaml_source import PathKey, YamlDocument, format_path

TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "a whole number",
              "number": "a number", "boolean": "true or false", "null": "null"}


# jsonschema explains the files that fail; jsonschema-rs says yes to the others, so a run where every file is
# fine never imports jsonschema (bench/bench_cli_start.py).

@cache
def schema_registry():
    """Every shipped schema by its $id, so one file can $ref another without any network."""
    from referencing import Registry, Resource
    schemas = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(SCHEMA_DIR.glob("*.schema.json"))]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


@cache
def schema_validator(name: str):
    from jsonschema import Draft202012Validator
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
    problems = [doc.problem(path, message) for error in _errors(doc.data, schema_name)
                for path, message in _words(error)]
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


def _errors(data, schema_name: str) -> list:
    """The schema's errors, less those in mapping-language values: the compiler reports those, with better words."""
    return [error for error in schema_validator(schema_name).iter_errors(data) if not _in_mapping_value(error)]


# --------------------------------------------------------------------------- what is left to compile

REQUIRED_MESSAGE = re.compile(r"^(['\"])(.*)\1 is a required property$", re.S)   # jsonschema's words
MAX_ROUNDS = 20              # leaving a part out can make its parent wrong (a required key gone): again, a few times
DEFINES_NAMES = ("vars", "steps", "lookups")   # what other parts read by name: leaving one out would make them wrong
SETTINGS = ("settings",)
_GONE = object()             # "remove it", as a replacement value


@dataclass(frozen=True)
class Checked:
    """A document checked against its schema: the problems, and the document to compile.

    ``document`` has each refused part left out (or, for a setting's declaration,
    replaced by an empty one, so that what reads the setting still finds it); it
    is None when too little is left to compile (the file's top level, or its
    settings, are wrong). ``after`` drops what the compiler then says about a
    part left out, or about its parent missing it: the schema has said it.
    """

    problems: list[Problem]
    document: YamlDocument | None
    left_out: tuple[tuple[PathKey, bool], ...] = ()   # (path, its parent may now miss it)

    def after(self, found: list[Problem]) -> list[Problem]:
        return [p for p in found if not any(_about(p.path, path, parent) for path, parent in self.left_out)]


def check_for_compiling(doc: YamlDocument, schema_name: str) -> Checked:
    problems = check_against_schema(doc, schema_name)
    if not problems:
        return Checked([], doc)
    data, left_out = doc.data, []
    errors = _errors(data, schema_name)
    for round_ in range(MAX_ROUNDS):
        for error in errors:
            for path, replacement, known_key in _parts_to_leave_out(error):
                if path is None:
                    return Checked(problems, None)
                data = _without(data, path, replacement)
                # a key the schema does not know is missed by nothing; a part found wrong in a later round
                # is wrong because of an earlier one
                left_out.append((path, known_key or round_ > 0))
        errors = _errors(data, schema_name)
        if not errors:
            return Checked(problems, replaced(doc, data=data), tuple(left_out))
    return Checked(problems, None)


def _parts_to_leave_out(error):
    """(path, replacement or _GONE, whether the schema knows the key) for each part this error refuses;
    path None: nothing sensible is left to compile."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        return [(_widened(tuple(error.absolute_path) + (key,)), _GONE, False) for key in error.instance
                if key not in known]
    path = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        return [(_widened(path + (error.instance,)), _GONE, False)]
    part = _widened(path)
    if part is None:
        return [(None, _GONE, True)]
    if part[:1] == SETTINGS:
        return [_in_settings(part)]
    return [(part, _GONE, True)]


def _widened(path: PathKey) -> PathKey | None:
    """The part to leave out for a refused ``path``: never a list item (the items after it would move, and
    the compiler's problems would name the wrong ones), nor a definition others read by name (the
    enclosing action, step or envelope goes instead). None: the file's top level."""
    for i, key in enumerate(path):
        if isinstance(key, int):
            path = path[:i]
            break
    while path:
        if path[-1] in DEFINES_NAMES:                          # the definitions (vars: [a, b])
            path = path[:-1]
        elif len(path) > 1 and path[-2] in DEFINES_NAMES:      # one definition (steps: {first: 3})
            path = path[:-2]
        else:
            break
    return path or None


def _in_settings(path: PathKey):
    """A wrong setting declaration stays declared (as anything), so templates that read it are not blamed."""
    if len(path) >= 3 and path[1] == "properties":
        return path[:3], {}, True
    if path == ("settings", "type"):
        return path, "object", True
    if len(path) == 2 and path[1] != "properties":
        return path, _GONE, True
    return None, _GONE, True



def _without(data, path: PathKey, replacement):
    """``data`` with ``path`` removed (or replaced): a copy along the path, the rest shared, the original as it was."""
    if not isinstance(data, dict) or path[0] not in data:
        return data
    copy = dict(data)
    if len(path) > 1:
        copy[path[0]] = _without(data[path[0]], path[1:], replacement)
    elif replacement is _GONE:
        del copy[path[0]]
    else:
        copy[path[0]] = replacement
    return copy


def _about(problem_path: str, left_out: PathKey, parent_too: bool) -> bool:
    """Whether a compiler problem at ``problem_path`` is about the part left out (or its parent missing it)."""
    text = format_path(left_out)
    if problem_path == text or problem_path.startswith((text + ".", text + "[")):
        return True
    return parent_too and problem_path == format_path(left_out[:-1])


def _in_mapping_value(error) -> bool:
    """Errors inside a mapping-language value: the compiler reports those, with better words."""
    while error is not None:
        if str(error.schema.get("description", "")).startswith("A mapping-language value") if isinstance(error.schema, dict) else False:
            return True
        error = error.parent
    return False


def _words(error) -> list[tuple[tuple, str]]:
    """(path, message) per thing the error refuses: one, except each unknown key of an object."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return [(path + (key,), bare_yaml_key(key) or f"unknown key '{key}'{hint}") for key in error.instance
                if key not in error.schema.get("properties", {})]
    return [_word(error)]


def _word(error) -> tuple[tuple, str]:
    path = tuple(error.absolute_path)
    kind, value, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.schema_path and isinstance(instance, str):
        # jsonschema reports a bad key at its parent; point at the key itself
        expected = value if kind == "enum" else error.schema.get("pattern", value)
        return path + (instance,), f"'{instance}' is not allowed here (expected one of: {', '.join(expected)})" \
            if kind == "enum" else f"'{instance}' is not allowed here (expected {expected})"
    if kind == "required":   # one error per missing key, each with the whole list: its message names the key
        named = REQUIRED_MESSAGE.match(error.message)
        missing = [key for key in value if isinstance(instance, dict) and key not in instance]
        return path, f"'{named.group(2) if named else missing[0] if missing else value}' is required"
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
    if kind == "oneOf" and "title" in error.schema:   # a value whose forms have a name ($defs duration, rate)
        return path, f"expected {error.schema['title']}, not {instance!r}"
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
    from jsonschema import Draft202012Validator
    return not any(True for _ in Draft202012Validator(error.validator_value).iter_errors(key))


def _type_of(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    for name, python in (("object", dict), ("array", list), ("string", str), ("null", type(None))):
        if isinstance(value, python):
            return TYPE_WORDS[name]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__
