"""Read tracking plan files, check them against schemas/plan.schema.json, and compile them.

Every problem names the plan file and line: the file's shape (the schema, whose
event schemas are checked against JSON Schema's own 2020-12 meta-schema), then
what only compiling finds (a $ref to nothing, a pattern no regex engine reads).
A configuration names each SDK source's plan (``sources.NAME.plan``); sources
that share a file share one compiled plan.
"""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema_rs

from ..problems import Problem
from ..validate.plan import DEFAULT_MODE, GROUP_TRAITS, IDENTIFY_TRAITS, PartSchema, SourcePlan, TrackingPlan
from .schema_check import check_against_schema
from .yaml_source import YamlDocument, load_yaml


def load_plan(path: Path, display_name: str | None = None) -> tuple[TrackingPlan | None, list[Problem]]:
    """The compiled plan in ``path``, or None and every problem found, each at its file:line."""
    doc, problems = load_yaml(path, display_name)
    if doc is None:
        return None, problems
    problems += check_against_schema(doc, "plan.schema.json")
    if problems:
        return None, problems
    data = doc.data
    shared = data.get("$defs") or {}
    events = {}
    for name, spec in data["events"].items():
        events[name] = _part(doc, ("events", name), "properties", name, name, spec, shared, problems)
    identify = _part(doc, ("identify",), "traits", IDENTIFY_TRAITS, "identify", data.get("identify"), shared, problems)
    group = _part(doc, ("group",), "traits", GROUP_TRAITS, "group", data.get("group"), shared, problems)
    if problems:
        return None, problems
    return TrackingPlan(data.get("name") or Path(path).stem, doc.file, events, identify, group), []


def _part(doc: YamlDocument, where: tuple, key: str, label: str, kind: str, spec: dict | None, shared: dict,
          problems: list[Problem]) -> PartSchema | None:
    """One event's (or traits') compiled schema; None when the plan gives none."""
    if not spec or key not in spec:
        return None
    schema = spec[key]
    if isinstance(schema, dict) and shared:   # "#/$defs/NAME" in an event's schema finds the plan's $defs
        schema = {**schema, "$defs": {**shared, **(schema.get("$defs") or {})}}
    found = _bad_patterns(doc, schema, where + (key,))
    if found:
        problems += found
        return None
    try:
        return PartSchema(label, key, kind, schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        problems.append(doc.problem(where + (key,), f"not a usable JSON Schema: {_first_line(exc)}"))
        return None


def _bad_patterns(doc: YamlDocument, schema, where: tuple) -> list[Problem]:
    """Patterns Python's regex engine cannot read: jsonschema, which explains failures, uses it."""
    found = []
    stack = [(schema, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    found += _regex_problem(doc, value, path + (key,))
                elif key == "patternProperties" and isinstance(value, dict):
                    found += [p for pattern in value for p in _regex_problem(doc, pattern, path + (key, pattern))]
                if isinstance(value, (dict, list)) and key not in ("enum", "const", "examples", "default"):
                    stack.append((value, path + (key,)))
        elif isinstance(node, list):
            stack.extend((item, path + (i,)) for i, item in enumerate(node))
    return found


def _regex_problem(doc: YamlDocument, pattern: str, path: tuple) -> list[Problem]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [doc.problem(path, f"not a regular expression: {exc}")]
    return []


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def source_plans(doc: YamlDocument, folder: Path) -> tuple[dict[str, SourcePlan], list[Problem]]:
    """Each SDK source's plan (``sources.NAME.plan``) as the configuration in ``doc`` names it, checked
    against the configuration's schema already; relative files are relative to ``folder``."""
    plans: dict[str, SourcePlan] = {}
    problems: list[Problem] = []
    loaded: dict[Path, TrackingPlan | None] = {}
    for name, spec in (doc.data.get("sources") or {}).items():
        if "plan" not in spec:
            continue
        where = ("sources", name, "plan")
        if "webhook" in spec:
            problems.append(doc.problem(where, "'plan' belongs to SDK sources (with write_key) only: a webhook "
                                               "source's events are made by its mapping"))
            continue
        file = folder / spec["plan"]["file"]
        if file.resolve() not in loaded:
            shown = str(Path(doc.file).parent / spec["plan"]["file"])
            if not file.is_file():
                problems.append(doc.problem(where + ("file",), f"no plan file at {shown}"))
                loaded[file.resolve()] = None
                continue
            loaded[file.resolve()], found = load_plan(file, shown)
            problems += found
        plan = loaded[file.resolve()]
        if plan is not None:
            plans[name] = SourcePlan(name, plan, spec["plan"].get("unplanned", DEFAULT_MODE),
                                     spec["plan"].get("invalid", DEFAULT_MODE))
    return plans, problems
