"""Everything a server process or the background worker builds from one ServeConfig.

Built twice from the same file (in the server and in the background process),
so both agree on destinations, sources and storage, and configuration errors
are reported before anything starts listening.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Engine
from ..load.config import routes_from_config
from ..problems import ConfigError, Problem
from ..source import BoundSource
from ..store import Store, open_store
from ..store.urls import masked_url
from .config import ServeConfig


@dataclass
class Setup:
    config: ServeConfig
    engine: Engine = field(repr=False)
    routes: list = field(repr=False)                     # their settings hold credentials
    sources: dict[str, BoundSource] = field(repr=False)  # webhook source name -> its mapping, settings resolved

    def open_store(self, create: bool = True) -> Store:
        """``create=False``: refuse a SQLite file that does not exist yet (the console alone reads, never makes one)."""
        storage = self.config.storage
        return open_store(storage.url, base=self.config.folder, create=create, **dict(storage.options))

    def describe(self) -> str:
        """One line for the start-up log: what is configured, never a secret."""
        keys = ["any write key (demo)"] if self.config.demo else self.config.sources_with_keys()
        hooks = [f"{name} (POST /sources/{name})" for name in self.config.webhooks]
        names = ", ".join(r.destination.slug + ("" if r.enabled else " (disabled)") for r in self.routes)
        return (f"sources: {', '.join(keys + hooks) or 'none'}; destinations: {names or 'none'}; "
                f"store: {masked_url(self.config.storage.url)} (in {self.config.folder})")


def build(config: ServeConfig, mappings: Path, environ=None) -> Setup:
    """ConfigError with every destination's and every webhook source's problems at once."""
    engine = Engine(mappings)
    routes, problems = [], []
    try:
        routes = routes_from_config(engine, config.config_dict(), config.file)
    except ConfigError as exc:
        problems += exc.problems
    sources = {}
    for name, hook in config.webhooks.items():
        try:
            sources[name] = engine.source(hook.mapping, hook.settings, environ)
        except ConfigError as exc:
            problems += [Problem(f"sources.{name}.{p.path}" if p.path else f"sources.{name}", p.message, config.file)
                         for p in exc.problems]
    if problems:
        raise ConfigError(config.located(problems))
    return Setup(config, engine, routes, sources)
