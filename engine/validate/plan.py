"""Tracking plans: which track events a source may send, and the JSON Schema their properties must follow.

A plan is compiled once (``engine/load/plan.py`` reads the file): one compiled
jsonschema-rs validator per planned event, found by the event's name in a dict,
so a plan of 500 events costs each event what a plan of 5 does. Only an event
that fails is explained, by jsonschema, in the words the Segment-spec check uses
(``events.explain``). An event breaks the plan when both say so: jsonschema-rs
knows a few more formats than the ones asserted here (``FORMATS``), and a value
it rejects that jsonschema accepts is let through rather than refused without a reason.

What happens to an event that breaks the plan is the source's choice (``SourcePlan``),
one for unplanned events and one for events that break their schema:

    allow            nothing is checked
    warn             the event goes on; the violation is recorded
    drop_properties  the top-level properties holding a failing value are removed and the
                     event goes on (schema failures only); the violation is recorded
    block            the event is rejected with the reasons, as a Segment-spec rejection is

Dropping, precisely: each failure sits at a path inside ``properties`` (``traits`` for
identify and group). The top-level key that path starts with is removed, whatever the depth
of the failure: ``properties.products[2].price`` drops ``products`` whole, since half an
object or a list with an item missing would reach destinations as if it were whole. A
failure no removal can cure (a required property missing, a rule on the whole object) is
recorded and the event goes on with it, as with warn.
"""
from __future__ import annotations

from dataclasses import dataclass

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker

from ..problems import Problem
from .events import _is_datetime, explain, format_path

ALLOW, WARN, DROP, BLOCK = "allow", "warn", "drop_properties", "block"
UNPLANNED_MODES = (ALLOW, WARN, BLOCK)          # an unplanned event has no schema to drop properties by
INVALID_MODES = (ALLOW, WARN, DROP, BLOCK)
DEFAULT_MODE = WARN                             # a new plan records and loses nothing until it is trusted
UNPLANNED = "unplanned"                         # the rule an event not in the plan breaks
IDENTIFY_TRAITS, GROUP_TRAITS = "(identify traits)", "(group traits)"   # what identify and group violations are filed under

# The formats a plan asserts: the Segment schemas' date-time, and those jsonschema checks without extra packages.
FORMATS = FormatChecker(formats=("date", "email", "ipv4", "ipv6", "uuid", "regex"))
FORMATS.checks("date-time")(_is_datetime)
ASSERTED_FORMATS = tuple(sorted(FORMATS.checkers))


@dataclass(frozen=True)
class Breach:
    """One way an event breaks the plan: under which event, which rule (a JSON Schema keyword, or
    ``unplanned``), where (a JSON path in the event) and why, in words."""

    event: str
    rule: str
    path: str
    message: str
    action: str          # what was done about it: warn, drop_properties or block

    def problem(self) -> Problem:
        return Problem(self.path, self.message)


@dataclass
class Verdict:
    """What a source's plan says about one event that breaks it."""

    event: dict                      # the event to go on with: the original, or with properties dropped
    breaches: list[Breach]
    blocked: bool = False

    @property
    def reason(self) -> str:
        if self.breaches and self.breaches[0].rule == UNPLANNED:
            return "the event is not in the source's tracking plan"
        return "the event breaks the source's tracking plan"

    def problems(self) -> list[Problem]:
        return [b.problem() for b in self.breaches]


class PartSchema:
    """The compiled schema of one part of a call: a track event's properties, or identify or group traits."""

    def __init__(self, label: str, where: str, kind: str, schema: dict):
        self.label, self.where, self.kind = label, where, kind   # kind: how 'required' messages name the call
        self.schema = schema
        self.fast = jsonschema_rs.Draft202012Validator(schema, formats={"date-time": _is_datetime},
                                                       validate_formats=True)
        self._explainer: Draft202012Validator | None = None      # made for the first event that fails

    def __repr__(self) -> str:
        return f"<PartSchema {self.label}>"

    def failures(self, value) -> list[tuple[list, str, str]]:
        """(path parts inside the part, message, rule) of each failure; [] when ``value`` follows the schema."""
        if self.fast.is_valid(value):
            return []
        if self._explainer is None:
            self._explainer = Draft202012Validator(self.schema, format_checker=FORMATS)
        return explain(self._explainer, value, lambda parts: self.kind)


@dataclass
class TrackingPlan:
    """A plan file, compiled: its events by name, and the identify and group traits' schemas."""

    name: str
    file: str
    events: dict[str, PartSchema | None]   # None: a planned event whose properties are not checked
    identify: PartSchema | None = None
    group: PartSchema | None = None

    def __repr__(self) -> str:
        return f"<TrackingPlan {self.name}: {len(self.events)} events>"

    def part_for(self, event: dict) -> tuple[bool, PartSchema | None]:
        """(planned, its schema) for a call that passed the Segment schemas; calls a plan does not
        cover (page, screen, alias; identify or group without a section) are planned, unchecked."""
        kind = event.get("type")
        if kind == "track":
            name = event.get("event")
            return name in self.events, self.events.get(name) if isinstance(name, str) else None
        if kind == "identify":
            return True, self.identify
        if kind == "group":
            return True, self.group
        return True, None


@dataclass
class SourcePlan:
    """A plan as one source enforces it: the plan, and the mode for unplanned and for invalid events."""

    source: str
    plan: TrackingPlan
    unplanned: str = DEFAULT_MODE
    invalid: str = DEFAULT_MODE

    def check(self, event: dict) -> Verdict | None:
        """None when the event may go on untouched; else what breaks, and what to do about it.

        ``event`` has passed the Segment-spec schemas: an object with a call type (and a track's name)."""
        planned, part = self.plan.part_for(event)
        if not planned:
            if self.unplanned == ALLOW:
                return None
            name = event.get("event")
            breach = Breach(str(name), UNPLANNED, "event",
                            f"'{name}' is not in the tracking plan '{self.plan.name}'", self.unplanned)
            return Verdict(event, [breach], blocked=self.unplanned == BLOCK)
        if part is None or self.invalid == ALLOW:
            return None
        value = event.get(part.where, {})
        failures = part.failures(value)
        if not failures:
            return None
        droppable = set(value) if self.invalid == DROP and isinstance(value, dict) else set()
        breaches: list[Breach] = []
        dropped: dict[str, None] = {}   # a dict keeps the order they were found in
        for parts, message, rule in failures:
            top = parts[0] if parts and parts[0] in droppable else None
            if top is not None:
                dropped[top] = None
            action = self.invalid if self.invalid != DROP or top is not None else WARN
            breaches.append(Breach(part.label, rule, format_path([part.where, *parts]), message, action))
        if dropped:
            event = {**event, part.where: {k: v for k, v in value.items() if k not in dropped}}
        return Verdict(event, breaches, blocked=self.invalid == BLOCK)
