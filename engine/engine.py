"""The library entry point: load the mappings once, then render events quickly."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .destination import Destination
from .failures import EventFailed
from .load.destination import load_destination
from .load.source import load_source
from .outcome import REJECTED, SKIPPED, Outcome
from .paths import MAPPINGS_DIR as DEFAULT_MAPPINGS
from .problems import ConfigError, Problem
from .render.request import Request
from .route import Route
from .source import BoundSource, Source
from .validate import EventValidator, SegmentCheck

log = logging.getLogger(__name__)


def display_path(path: Path) -> str:
    """Paths in messages are relative to where the user stands, when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def load_folder(root: Path, kind: str, load, only: str | None = None) -> tuple[dict, list[Problem]]:
    """Every file in ``root/kind`` (destinations or sources), keyed by file name; all problems at once.
    ``only``: the file of that name alone (``only.yaml``), when there is one."""
    loaded: dict = {}
    problems: list[Problem] = []
    folder = Path(root) / kind
    if not folder.is_dir():
        if kind == "sources":
            return {}, []  # sources are optional
        return {}, [Problem("", f"no {kind} folder at {display_path(folder)}", display_path(Path(root)))]
    by_name: dict[str, str] = {}
    files = sorted(folder.glob("*.y*ml"))
    if only is not None and any(file.stem == only for file in files):
        files = [file for file in files if file.stem == only]
    for file in files:
        item, found = load(file, display_path(file))
        problems += found
        if item is None:
            continue
        if item.name in by_name:
            problems.append(Problem("name", f"'{item.name}' is already the name of {by_name[item.name]}", item.file, 1))
        by_name[item.name] = item.file
        loaded[item.slug] = item
    return loaded, problems


def load_mappings(root: Path, only: str | None = None) -> tuple[dict[str, Destination], dict[str, Source], list[Problem]]:
    """Every destination and source in ``root``; with ``only``, the destination file of that name alone (a
    command about one destination reads no other file), or everything when no file has that name."""
    destinations, problems = load_folder(root, "destinations", load_destination, only)
    if only is not None and only in destinations:
        return destinations, {}, problems
    sources, more = load_folder(root, "sources", load_source)
    return destinations, sources, problems + more


class Engine:
    """Load with ``Engine()`` (or ``Engine("path/to/mappings")``), then render.

    Loading compiles every mapping and raises ConfigError listing every
    error in every file; warnings (a file that loads but may not do what its
    author expects, such as a batch request that reads the event) are logged
    and kept in ``warnings``. Rendering never raises for bad events, it returns
    a rejected Outcome with every error.
    """

    def __init__(self, mappings: str | Path = DEFAULT_MAPPINGS, *, lint: bool = True, only: str | None = None):
        """``only``: load the destination file of that name (``planhat`` for planhat.yaml) and nothing else,
        when there is one (a quicker start for a command about one destination)."""
        self.root = Path(mappings)
        self.destinations, self.sources, problems = load_mappings(self.root, only)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigError(errors)
        # what loads but may not do what its author expects (a batch request that reads the event)
        self.warnings = [p for p in problems if p.severity != "error"]
        for warning in self.warnings:
            log.warning("%s", warning)
        self.validator = EventValidator()
        self.lint = lint
        self._check = SegmentCheck(self.validator).check if lint else self._check_without_lint

    # --- destinations and routes
    def destination(self, name: str) -> Destination:
        """Find a destination by file name (``planhat``) or display name (``Planhat``)."""
        return _find(self.destinations, name, "destination")

    def source(self, name: str, settings: dict | None = None, environ=None) -> BoundSource:
        """A source with its settings resolved, ready to ``process`` webhook payloads."""
        source = _find(self.sources, name, "source")
        resolved, problems = source.settings.resolve(settings, environ)
        if problems:
            raise ConfigError(problems)
        return BoundSource(source, resolved, source.settings.secrets_in(resolved), self.validator)

    def route(self, name: str, settings: dict | None = None, *, enabled: bool = True, types=None, events=None,
              where: str | None = None, environ=None) -> Route:
        destination = self.destination(name)
        resolved, problems = destination.settings.resolve(settings, environ)
        if problems:
            raise ConfigError(problems)
        return Route(destination, resolved, destination.settings.secrets_in(resolved), enabled,
                     frozenset(types) if types is not None else None,
                     frozenset(events) if events is not None else None, where)

    # --- rendering
    def validate(self, event) -> tuple[list[Problem], list[Problem]]:
        """(errors, warnings): Segment-spec errors, and ecommerce warnings when linting is on."""
        return self._check(event)

    def _check_without_lint(self, event) -> tuple[list[Problem], list[Problem]]:
        return self.validator.check(event), []

    def render(self, event, route: Route | str, settings: dict | None = None, *, responses=None) -> Outcome:
        """One event, one destination."""
        if isinstance(route, str):
            route = self.route(route, settings)
        return self.render_all(event, [route], responses=responses)[0]

    def render_all(self, event, routes: list[Route], *, responses=None) -> list[Outcome]:
        """One event, every configured destination: exactly one outcome each.

        Multi-step actions show their first request and the plan of the rest;
        with ``responses`` (a client such as SavedResponses) every step runs against
        its answers and the outcome holds every request it would send.
        """
        errors, warnings = self._check(event)  # self.validate, one call shorter: this runs for every event
        message_id = event.get("messageId") if isinstance(event, dict) else None
        outcomes = []
        for route in routes:
            name = route.destination.name
            if errors:
                outcome = Outcome(name, REJECTED, errors=errors, message_id=message_id,
                                  reason="the event does not follow the Segment spec")
            else:
                try:
                    reason = route.skip_reason(event)
                except EventFailed as exc:   # the route's condition fails on this event: this destination only
                    outcomes.append(Outcome(name, REJECTED, errors=[exc.problem], message_id=message_id,
                                            reason=exc.reason, warnings=list(warnings)))
                    continue
                if reason:
                    outcome = Outcome(name, SKIPPED, reason=reason, message_id=message_id)
                else:
                    outcome = route.destination.render(event, route.settings, route.secrets, client=responses)
            if warnings:
                outcome.warnings = list(warnings)
            outcomes.append(outcome)
        return outcomes

    def render_many(self, events: Iterable, routes: list[Route]) -> Iterator[list[Outcome]]:
        for event in events:
            yield self.render_all(event, routes)

    def batch(self, route: Route, outcomes: list[Outcome]) -> list[Request]:
        """Sendable outcomes of one route combined into the vendor's batch requests, as delivery combines them
        (a route whose limits turn batching off: each event's own request)."""
        return route.destination.batch(outcomes, route.settings, route.secrets, route.limits.batch)


def _find(items: dict, name: str, kind: str):
    wanted = name.lower()
    for slug, item in items.items():
        if wanted in (slug.lower(), item.name.lower()):
            return item
    raise ConfigError([Problem(kind, f"unknown {kind} '{name}' (known: {', '.join(sorted(items)) or 'none'})")])
