"""Read a configuration file: the destinations a user has configured (settings, filters,
limits), where accepted events are stored, and how they are delivered."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import jmespath
from jmespath.exceptions import JMESPathError

from ..durations import parse_rate
from ..logs import LogOptions, log_options
from ..map.reads import negation_problem
from ..problems import ConfigError, Problem
from .delivery_options import DeliveryOptions, StorageOptions, delivery_options, storage_options
from .schema_check import check_against_schema
from .yaml_source import load_yaml


@dataclass
class Config:
    data: dict = field(repr=False)     # destinations' settings may hold credentials
    file: str
    folder: Path                       # relative paths in the file are relative to this
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    storage: StorageOptions = field(default_factory=StorageOptions)
    logging: LogOptions = field(default_factory=LogOptions)

    @property
    def mappings(self) -> Path | None:
        return self.folder / self.data["mappings"] if self.data.get("mappings") else None


def load_config(path: Path) -> tuple[Config | None, list[Problem]]:
    doc, problems = load_yaml(path)
    if doc is None:
        return None, problems
    problems += check_against_schema(doc, "config.schema.json")
    if problems:
        return None, problems
    for name, spec in doc.data["destinations"].items():
        if spec.get("where"):
            try:
                negation = negation_problem(spec["where"], jmespath.compile(spec["where"]).parsed)
            except JMESPathError as exc:
                problems.append(doc.problem(("destinations", name, "where"),
                                            f"not a valid JMESPath expression: {str(exc).splitlines()[0]}"))
            else:
                if negation:
                    problems.append(doc.problem(("destinations", name, "where"), negation))
        rate = (spec.get("limits") or {}).get("rate")
        if rate is not None:
            try:
                parse_rate(rate)
            except ValueError as exc:
                problems.append(doc.problem(("destinations", name, "limits", "rate"), str(exc)))
    delivery, found = delivery_options(doc.data, doc.problem)
    problems += found
    logging, found = log_options(doc.data, doc.problem)
    problems += found
    return Config(doc.data, doc.file, Path(path).resolve().parent, delivery, storage_options(doc.data),
                  logging), problems


def routes_from_config(engine, config: Config | dict, file: str | None = None) -> list:
    data = config.data if isinstance(config, Config) else config
    file = file or (config.file if isinstance(config, Config) else None)
    routes, problems = [], []
    for name, spec in data["destinations"].items():
        try:
            route = engine.route(name, spec.get("settings"), enabled=spec.get("enabled", True),
                                 types=spec.get("types"), events=spec.get("events"), where=spec.get("where"))
        except ConfigError as exc:
            problems += [Problem(f"destinations.{name}.{p.path}", p.message, file) for p in exc.problems]
            continue
        route.limits = _limits(route.destination.limits, spec.get("limits") or {})
        routes.append(route)
    if problems:
        raise ConfigError(problems)
    return routes


def _limits(declared, override: dict):
    """The routes file may set its own limits; the YAML's are the vendor's, the file's the user's."""
    changes = {}
    if "concurrency" in override:
        changes["concurrency"] = override["concurrency"]
    if "rate" in override:
        changes["rate"] = parse_rate(override["rate"])
    if "batch" in override:
        changes["batch"] = override["batch"]
    return replace(declared, **changes)
