"""Load one source file: parse, check against the schema, compile, lint."""
from __future__ import annotations

from pathlib import Path

import jmespath
from jmespath.exceptions import JMESPathError

from ..map.language import SOURCE_SCOPES, Compiler
from ..problems import Problem
from ..render.reads import operator_vars
from ..source import Handler, Source
from .schema_check import check_for_compiling
from .settings import SettingsSpec
from .steps import compile_steps
from .yaml_source import YamlDocument, load_yaml


def load_source(path: Path, display_name: str | None = None) -> tuple[Source | None, list[Problem]]:
    doc, problems = load_yaml(path, display_name)
    if doc is None:
        return None, problems
    checked = check_for_compiling(doc, "source.schema.json")   # what the schema refuses is left out, the rest compiled
    problems += checked.problems
    if checked.document is None:
        return None, problems
    source, found = compile_source(checked.document, Path(path).stem)
    problems += checked.after(found)
    return (None if problems else source), problems


def compile_source(doc: YamlDocument, slug: str) -> tuple[Source, list[Problem]]:
    data = doc.data
    settings = SettingsSpec(slug, data["settings"])
    compiler = Compiler(doc.problem, set(settings.properties), SOURCE_SCOPES)
    problems: list[Problem] = []

    def expression(text, path):
        try:
            return jmespath.compile(text)
        except JMESPathError as exc:
            problems.append(doc.problem(path, f"{text!r} is not a valid JMESPath expression: {str(exc).splitlines()[0]}"))
            return jmespath.compile("`null`")

    variables = []
    for name, raw in (data.get("vars") or {}).items():
        variables.append((name, compiler.value(raw, ("vars", name))))
        compiler.define_var(name)

    defaults = (data.get("defaults") or {}).get("request")
    # lookups run in the order each handler lists them: checked per handler below
    lookups = compile_steps(data.get("lookups") or {}, compiler, ("lookups",), defaults, sequence=[],
                            check_reads=False, operator=operator_vars(variables), root="lookups")

    handlers = {}
    for kind, spec in data["handlers"].items():
        path = ("handlers", kind)
        for i, name in enumerate(spec.get("lookups", [])):
            if name not in lookups:
                compiler.report(path + ("lookups", i), f"unknown lookup '{name}' (declared: {', '.join(lookups) or 'none'})")
        events = [compiler.value(raw, path + ("events", i)) for i, raw in enumerate(spec["events"])]
        handlers[kind] = Handler([n for n in spec.get("lookups", []) if n in lookups], events)

    webhook = data["webhook"]
    source = Source(data["name"], slug, doc.file, settings, variables,
                    expression(webhook["type"], ("webhook", "type")), expression(webhook["id"], ("webhook", "id")),
                    dict(webhook.get("ignore") or {}), lookups, handlers)
    return source, problems + compiler.problems
