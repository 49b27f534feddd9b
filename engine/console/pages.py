"""What each console page shows, read from the store and the setup: plain data for the templates.

Every value here is data for an autoescaping template; nothing here writes HTML.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from ..durations import parse_since
from ..store import (
    DEAD,
    DELIVERED,
    DRY_RUN,
    INTAKE,
    NOT_RECORDED,
    QUEUED,
    REJECTED,
    RETRYING,
    SKIPPED,
    STATES,
    EventQuery,
)
from . import charts

PAGE = 100            # rows per page: every list is LIMITed
CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
HOUR, DAY = 3600.0, 86400.0


# --------------------------------------------------------------------------- formatting (template filters)

def when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


PLURALS = {"delivery": "deliveries", "dead delivery": "dead deliveries"}   # the nouns not made plural by an s


def plural(count: int, noun: str) -> str:
    """'1 event', '2 events', '1 dead delivery', '0 deliveries': the count and the noun it takes."""
    return f"{count:,} {noun if count == 1 else PLURALS.get(noun, noun + 's')}"


def masked(masker, value):
    """``value`` with every configured secret masked, dataclass records (events, deliveries) included."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: masked(masker, getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, list):
        return [masked(masker, v) for v in value]
    if isinstance(value, tuple):
        return tuple(masked(masker, v) for v in value)
    if isinstance(value, dict):
        return {k: masked(masker, v) for k, v in value.items()}
    return masker.data(value)


# --------------------------------------------------------------------------- overview

@dataclass
class Row:
    """One destination's (or webhook source's) counts on the overview, and why what is not delivered is not."""

    name: str
    counts: dict
    skipped: dict = field(default_factory=dict)    # reason -> n
    rejected: dict = field(default_factory=dict)
    dead: dict = field(default_factory=dict)       # reason -> n
    retrying: list = field(default_factory=list)   # (last status, n, the latest one's error, its time)
    chart: charts.Chart | None = None

    @property
    def accepted(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "in_flight")

    @property
    def queue_depth(self) -> int:
        return self.counts.get(QUEUED, 0) + self.counts.get(RETRYING, 0)

    def get(self, state: str) -> int:
        return self.counts.get(state, 0)


# the overview's chart ranges: (how far back, bucket seconds, the chart's title)
RANGES = {"1h": (HOUR, 60.0, "per minute, last hour"), "6h": (6 * HOUR, 300.0, "per 5 minutes, last 6 hours"),
          "24h": (DAY, 1800.0, "per 30 minutes, last 24 hours"), "7d": (7 * DAY, 6 * HOUR, "per 6 hours, last 7 days")}
DEFAULT_RANGE = "1h"
REFUSALS_SHOWN = 5    # the latest refused requests the overview lists (the Refused page has the rest)
REASONS_SHOWN = 5     # reasons per destination and state the overview lists, the most frequent first


def chart_range(query: dict) -> str:
    chosen = (query.get("range") or [""])[0]
    return chosen if chosen in RANGES else DEFAULT_RANGE


def overview(store, setup, now: float, chosen: str = DEFAULT_RANGE) -> dict:
    counts = store.counts(now)
    skipped, rejected, dead = store.reasons(SKIPPED), store.reasons(REJECTED), store.reasons(DEAD)
    retrying = store.answers(RETRYING, [name for name, per in counts.items() if per.get(RETRYING)])
    names = [route.destination.slug for route in setup.routes]
    names += [n for n in sorted(counts) if n not in names and not n.startswith("source:") and n != INTAKE]
    sources = [f"source:{name}" for name in setup.config.webhooks]
    sources += [n for n in sorted(counts) if n.startswith("source:") and n not in sources]
    back, bucket, title = RANGES[chosen]
    since = now - back
    timelines = store.timelines(since, bucket)

    def row(name: str) -> Row:
        drawn = charts.chart(timelines.get(name, []), since, now, bucket, f"{name}: {title}", small=True)
        return Row(name, counts.get(name, {}), _first_reasons(skipped.get(name, {})),
                   _first_reasons(rejected.get(name, {})), _first_reasons(dead.get(name, {})),
                   retrying.get(name, []), drawn)

    every = [(start, ok, failed) for start, ok, failed in _summed(timelines.values())]
    refused = store.refusals(since=now - DAY, limit=1000)
    return {
        "destinations": [row(n) for n in names],
        "sources": [row(n) for n in sources],
        "intake": row(INTAKE),
        "chart": charts.chart(every, since, now, bucket, f"every destination: {title}"),
        "ranges": list(RANGES), "range": chosen,
        "refused": refused[:REFUSALS_SHOWN], "refused_by_status": _by_status(refused),
        "refused_total": sum(r.count for r in refused),
        "now": now,
    }


def _first_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """The most frequent reasons; the rest counted under one line."""
    shown = dict(list(reasons.items())[:REASONS_SHOWN])
    rest = sum(reasons.values()) - sum(shown.values())
    if rest:
        shown[f"(other reasons, {len(reasons) - len(shown)} of them)"] = rest
    return shown


def _summed(timelines) -> list[tuple[float, int, int]]:
    buckets: dict[float, list[int]] = {}
    for timeline in timelines:
        for start, ok, failed in timeline:
            counted = buckets.setdefault(start, [0, 0])
            counted[0] += ok
            counted[1] += failed
    return [(start, ok, failed) for start, (ok, failed) in sorted(buckets.items())]


def _by_status(refused: list) -> list[tuple[int, int]]:
    totals: dict[int, int] = {}
    for r in refused:
        totals[r.status] = totals.get(r.status, 0) + r.count
    return sorted(totals.items())


# --------------------------------------------------------------------------- refused requests

def refusals(store, query: dict, now: float) -> dict:
    """The Refused page: the sample of requests refused at the door, since a moment (24h by default)."""
    since_text = (query.get("since") or [""])[0].strip() or "24h"
    problem = ""
    try:
        since = parse_since(since_text, now)
    except ValueError as exc:
        problem, since = f"since: {exc}", now - DAY
    return {"refused": store.refusals(since=since, limit=PAGE), "since": since_text, "problem": problem}


# --------------------------------------------------------------------------- events

FILTER_STATES = (DELIVERED, RETRYING, DEAD, SKIPPED, REJECTED, QUEUED, DRY_RUN)


@dataclass
class EventFilters:
    """The Events page's filters as typed, the query they make, and what in them could not be read."""

    query: EventQuery
    text: dict                 # the parameters as given (the form shows them again; links keep them)
    problems: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return any(self.text.values())


def event_query(query: dict, now: float) -> EventFilters:
    def text(key: str) -> str:
        return (query.get(key) or [""])[0].strip()
    given = {key: text(key) for key in ("type", "name", "userId", "messageId", "destination", "state", "since",
                                        "until")}
    problems, moments = [], {}
    for key in ("since", "until"):
        if given[key]:
            try:
                moments[key] = parse_since(given[key], now)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    state = given["state"] or None
    if state is not None and state not in STATES:
        problems.append(f"state: expected one of {', '.join(STATES)}, not {state!r}")
        state = None
    before = number(query, "before")
    return EventFilters(EventQuery(type=given["type"] or None, name=given["name"] or None,
                                   user_id=given["userId"] or None, message_id=given["messageId"] or None,
                                   destination=given["destination"] or None, state=state,
                                   since=moments.get("since"), until=moments.get("until"),
                                   before_id=before or None, limit=PAGE),
                        {k: v for k, v in given.items() if v}, problems)


def events(store, query: EventQuery) -> list:
    return store.events(query)


# --------------------------------------------------------------------------- one delivery

def delivery(record, setup) -> dict:
    """A delivery with what was sent: the request its latest attempt sent (recorded by the worker), or, where
    none was recorded, a plain note saying so. Beside it, under its own heading, what today's mapping makes
    of the event: a preview, never offered as what was sent."""
    preview, preview_note = [], None
    if record.destination != INTAKE and not record.destination.startswith("source:") and isinstance(record.event, dict):
        route = next((r for r in setup.routes if r.destination.slug == record.destination), None)
        if route is None:
            preview_note = f"{record.destination} is no longer configured"
        else:
            outcome = setup.engine.render(record.event, route)
            preview = [r.to_dict() for r in outcome.requests]
            if not preview:
                preview_note = f"today's mapping does not send this event ({outcome.status}: {outcome.reason or ''})"
    return {"record": record, "sent": record.sent, "tried": record.tried, "not_recorded": NOT_RECORDED,
            "preview": preview, "preview_note": preview_note,
            "kept_request": record.request if record.sent is None else None}


# --------------------------------------------------------------------------- dead letters

def destination_names(setup) -> list[str]:
    return [route.destination.slug for route in setup.routes] + [f"source:{n}" for n in setup.config.webhooks]


def number(values: dict, key: str) -> int:
    text = (values.get(key) or ["0"])[0]
    return int(text) if text.isdigit() and len(text) < 18 else 0


def ids(values: list[str]) -> list[int]:
    return sorted({int(v) for v in values if v.isdigit() and len(v) < 18})


# --------------------------------------------------------------------------- replays

def replays(store) -> list:
    """The latest replays (``eventmap replay``), newest first: each one's id, range, filters and progress."""
    return store.replays(limit=PAGE)


# --------------------------------------------------------------------------- mapping tester (tester.py)

def samples() -> dict:
    """The tester's example events."""
    return json.loads(resources.files(__package__).joinpath("samples.json").read_text(encoding="utf-8"))
