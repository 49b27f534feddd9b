"""The console's Violations page: tracking-plan violations by event name, each with the failing rule and an
example payload (``store.violations``; plans are enforced at intake, see docs/tracking-plans.md).

Plain data for an autoescaping template, with every configured secret masked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..durations import parse_since
from ..store import ViolationQuery, ViolationRecord
from . import pages


@dataclass
class EventViolations:
    """One event name's violations, the most recent first."""

    event: str
    records: list[ViolationRecord] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(r.count for r in self.records)


def violations_page(store, setup, query: dict, masker, now: float) -> dict:
    """What the page shows for the filters in ``query`` (source, event, since)."""
    source, event, since = (_first(query, key) for key in ("source", "event", "since"))
    problem = ""
    moment = None
    if since:
        try:
            moment = parse_since(since, now)
        except ValueError as exc:
            problem = f"since: {exc}"
    found = store.violations(ViolationQuery(source or None, event or None, moment, limit=pages.PAGE))
    by_event: dict[str, EventViolations] = {}
    for record in pages.masked(masker, found):
        by_event.setdefault(record.event, EventViolations(record.event)).records.append(record)
    return {"groups": sorted(by_event.values(), key=lambda g: (-g.count, g.event)),
            "sources": sorted(getattr(setup.config, "plans", {}) or {}),
            "filters": {"source": source, "event": event, "since": since}, "problem": problem}


def _first(values: dict, key: str) -> str:
    found = values.get(key) or [""]
    return found[0].strip()
