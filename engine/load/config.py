"""Read a routes file: the destinations a user has configured, with settings and filters."""
from __future__ import annotations

from pathlib import Path

import jmespath
from jmespath.exceptions import JMESPathError

from ..problems import ConfigError, Problem
from .schema_check import check_against_schema
from .yaml_source import load_yaml


def load_config(path: Path) -> tuple[dict, list[Problem]]:
    doc, problems = load_yaml(path)
    if doc is None:
        return {}, problems
    problems += check_against_schema(doc, "config.schema.json")
    if problems:
        return {}, problems
    for name, spec in doc.data["destinations"].items():
        if spec.get("where"):
            try:
                jmespath.compile(spec["where"])
            except JMESPathError as exc:
                problems.append(doc.problem(("destinations", name, "where"),
                                            f"not a valid JMESPath expression: {str(exc).splitlines()[0]}"))
    return doc.data, problems


def routes_from_config(engine, config: dict, file: str) -> list:
    routes, problems = [], []
    for name, spec in config["destinations"].items():
        try:
            routes.append(engine.route(name, spec.get("settings"), enabled=spec.get("enabled", True),
                                       types=spec.get("types"), events=spec.get("events"), where=spec.get("where")))
        except ConfigError as exc:
            problems += [Problem(f"destinations.{name}.{p.path}", p.message, file) for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    return routes
