"""Which configured destinations an event goes to, and why not when it doesn't.

The rules follow Segment: the event's ``integrations`` object turns a
destination on or off by its display name, ``All`` covers every destination
without a key of its own, and everything is on by default. On top of that a
configured destination may subscribe to some call types, some track event
names, or a JMESPath condition. A condition that cannot be evaluated on an event (``contains()`` of a
missing field) fails that event alone at that destination (``EventFailed``), never its batch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import jmespath

from .destination import Destination, Limits
from .failures import EventFailed
from .map.language import is_truthy
from .problems import Problem
from .secrets import MASK

CONDITION_FAILED = "the route's condition cannot be evaluated on this event"


def integrations_decision(event: dict, name: str) -> str | None:
    """None when the integrations object lets the event through, else the reason it does not."""
    integrations = event.get("integrations") or {}
    if not isinstance(integrations, dict):
        return None
    if name in integrations:
        if integrations[name] is False:
            return f"disabled in integrations ({json.dumps({name: False})})"
        return None
    if integrations.get("All", True) is False:
        return f"disabled in integrations ('All' is false and there is no '{name}' key)"
    return None


@dataclass
class Route:
    """One destination as configured by a user: its settings and its subscription."""

    destination: Destination
    settings: dict
    secrets: frozenset
    enabled: bool = True
    types: frozenset | None = None    # call types to send; None means all the destination accepts
    events: frozenset | None = None   # track/page/screen names to send; None means all
    where: str | None = None          # JMESPath condition on the event
    limits: Limits = None  # type: ignore[assignment]  # None given: the destination's own, set in __post_init__

    def __repr__(self) -> str:
        """Settings shown with every credential masked: a route's repr ends up in logs and tracebacks."""
        secret = self.destination.settings.secret_names  # by name, so no other setting is touched
        settings = {key: MASK if key in secret and value not in (None, "") else value
                    for key, value in self.settings.items()}
        return (f"Route({self.destination.slug}, settings={settings!r}, enabled={self.enabled}, types={self.types}, "
                f"events={self.events}, where={self.where!r})")

    def __post_init__(self):
        self._where = jmespath.compile(self.where) if self.where else None
        if self.limits is None:
            self.limits = self.destination.limits

    def skip_reason(self, event: dict) -> str | None:
        name = self.destination.name
        # most routes take all their destination accepts, and most events carry no integrations object
        if self.enabled and self.types is None and self.events is None and self._where is None \
                and event.get("type") in self.destination.by_type \
                and not (self.destination.obeys_integrations and event.get("integrations")):
            return None
        if not self.enabled:
            return f"{name} is disabled in the configuration"
        reason = integrations_decision(event, name) if self.destination.obeys_integrations else None
        if reason:
            return reason
        call_type = event.get("type")
        if call_type not in self.destination.by_type:
            return self.destination.no_action_reason(event)
        if self.types is not None and call_type not in self.types:
            return f"not subscribed: call type '{call_type}' is not in this route's types ({', '.join(sorted(self.types))})"
        label = event.get("event") if call_type == "track" else event.get("name")
        if self.events is not None and call_type in ("track", "page", "screen") and label not in self.events:
            return f"not subscribed: '{label}' is not in this route's events"
        if self._where is not None and not is_truthy(self._condition(event)):
            return f"not subscribed: condition {self.where!r} is false for this event"
        return None

    def _condition(self, event: dict):
        """The ``where`` condition's value for this event; EventFailed when JMESPath refuses this event's data
        (a function given the wrong type, an ordering of text against a number)."""
        try:
            return self._where.search(event)  # type: ignore[union-attr]  # only called with a condition
        except Exception as exc:  # noqa: BLE001  jmespath raises its own errors and Python's TypeError
            raise EventFailed(CONDITION_FAILED, Problem("where", f"{self.where}: {type(exc).__name__}: {exc}")) from None
