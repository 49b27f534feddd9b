"""Read a configuration file: the destinations a user has configured (settings, filters,
limits), where accepted events are stored, and how they are delivered; and find the
mappings folder a command reads."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import jmespath
from jmespath.exceptions import JMESPathError

from ..durations import parse_rate
from ..logs import LogOptions, log_options
from ..map.reads import negation_problem
from ..paths import MAPPINGS_DIR
from ..problems import ConfigError, Problem
from .delivery_options import DeliveryOptions, StorageOptions, delivery_options, storage_options
from .schema_check import check_for_compiling
from .yaml_source import YamlDocument, load_yaml

SEARCH_ORDER = ("--mappings DIR, else the configuration's mappings: (relative to that file), else ./mappings "
                "(when it has destinations/), else the shipped ones")


@dataclass
class Config:
    data: dict = field(repr=False)     # destinations' settings may hold credentials
    file: str
    folder: Path                       # relative paths in the file are relative to this
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    storage: StorageOptions = field(default_factory=StorageOptions)
    logging: LogOptions = field(default_factory=LogOptions)
    plans: dict = field(default_factory=dict, repr=False)   # source name -> SourcePlan (validate/plan.py)
    doc: YamlDocument | None = field(default=None, repr=False, compare=False)   # the file's lines (and text)

    @property
    def mappings(self) -> Path | None:
        return self.folder / self.data["mappings"] if self.data.get("mappings") else None

    def located(self, problems: list[Problem]) -> list[Problem]:
        """Problems found after loading (a destination's settings), at the line of the key they name."""
        return self.doc.located(problems) if self.doc is not None else problems


@dataclass(frozen=True)
class MappingsFolder:
    """The folder a command reads destinations/ and sources/ from, and which rule of SEARCH_ORDER chose it."""

    path: Path
    chosen_by: str

    def note(self) -> str:
        """For a destination or source not found: where it was looked for, and where else it could be."""
        return f"looked in {self.path} ({self.chosen_by}); mapping files come from {SEARCH_ORDER}"


def find_mappings(option: Path | None = None, configured: Path | None = None,
                  config_file: str | None = None) -> MappingsFolder:
    """SEARCH_ORDER: the one place it is decided, for every command."""
    if option:
        return MappingsFolder(Path(option), "--mappings")
    if configured:
        return MappingsFolder(configured, f"mappings: in {config_file}")
    local = Path("mappings")
    if (local / "destinations").is_dir():
        return MappingsFolder(local, f"./mappings, in {Path.cwd()}")
    return MappingsFolder(MAPPINGS_DIR, f"the shipped mappings: no --mappings, no mappings: in a configuration, "
                                        f"no mappings/destinations in {Path.cwd()}")


def load_config(path: Path) -> tuple[Config | None, list[Problem]]:
    """The configuration, or None with every problem in the file (a part the schema refuses is left
    out, and the rest is still checked)."""
    doc, problems = load_yaml(path)
    if doc is None:
        return None, problems
    checked = check_for_compiling(doc, "config.schema.json")
    problems += checked.problems
    if checked.document is None:
        return None, problems
    data, found = checked.document.data, []
    for name, spec in data["destinations"].items():
        if spec.get("where"):
            try:
                negation = negation_problem(spec["where"], jmespath.compile(spec["where"]).parsed)
            except JMESPathError as exc:
                found.append(doc.problem(("destinations", name, "where"),
                                         f"not a valid JMESPath expression: {str(exc).splitlines()[0]}"))
            else:
                if negation:
                    found.append(doc.problem(("destinations", name, "where"), negation))
        rate = (spec.get("limits") or {}).get("rate")
        if rate is not None:
            try:
                parse_rate(rate)
            except ValueError as exc:
                found.append(doc.problem(("destinations", name, "limits", "rate"), str(exc)))
    delivery, more = delivery_options(data, doc.problem)
    found += more
    logging, more = log_options(data, doc.problem)
    found += more
    from .plan import source_plans  # tracking plans compile jsonschema-rs validators: only when a file is loaded
    plans, more = source_plans(checked.document, Path(path).resolve().parent)
    found += more
    problems += checked.after(found)
    if checked.problems:
        return None, problems
    return Config(data, doc.file, Path(path).resolve().parent, delivery, storage_options(data), logging, plans,
                  doc), problems


def routes_from_config(engine, config: Config | dict, file: str | None = None) -> list:
    """A route per configured destination; ConfigError with every destination's problems at once
    (with a Config: each at the line of the destination it names)."""
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
        raise ConfigError(config.located(problems) if isinstance(config, Config) else problems)
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
