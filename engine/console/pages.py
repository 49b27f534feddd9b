"""What each console page shows, read from the store and the setup: plain data for the templates.

Every value here is data for an autoescaping template; nothing here writes HTML.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from .. import jsoncodec
from ..explain import explain, shown
from ..outcome import REJECTED as OUTCOME_REJECTED
from ..problems import ConfigError
from ..secrets import Masker
from ..store import INTAKE, QUEUED, REJECTED, RETRYING, SKIPPED, EventQuery
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
    """One destination's (or webhook source's) counts on the overview."""

    name: str
    counts: dict
    skipped: dict = field(default_factory=dict)    # reason -> n
    rejected: dict = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "in_flight")

    @property
    def queue_depth(self) -> int:
        return self.counts.get(QUEUED, 0) + self.counts.get(RETRYING, 0)

    def get(self, state: str) -> int:
        return self.counts.get(state, 0)


def overview(store, setup, now: float) -> dict:
    counts = store.counts(now)
    skipped, rejected = store.reasons(SKIPPED), store.reasons(REJECTED)
    names = [route.destination.slug for route in setup.routes]
    names += [n for n in sorted(counts) if n not in names and not n.startswith("source:") and n != INTAKE]
    sources = [f"source:{name}" for name in setup.config.webhooks]
    sources += [n for n in sorted(counts) if n.startswith("source:") and n not in sources]

    def row(name: str) -> Row:
        return Row(name, counts.get(name, {}), skipped.get(name, {}), rejected.get(name, {}))

    return {
        "destinations": [row(n) for n in names],
        "sources": [row(n) for n in sources],
        "intake": row(INTAKE),
        "hour": charts.chart(store.timeline(now - HOUR, 60), now - HOUR, now, 60, "per minute, last hour"),
        "day": charts.chart(store.timeline(now - DAY, HOUR), now - DAY, now, HOUR, "per hour, last day"),
        "now": now,
    }


# --------------------------------------------------------------------------- events

def event_query(query: dict) -> EventQuery:
    def text(key: str) -> str | None:
        value = (query.get(key) or [""])[0].strip()
        return value or None
    before = number(query, "before")
    return EventQuery(type=text("type"), name=text("name"), user_id=text("userId"), message_id=text("messageId"),
                      before_id=before or None, limit=PAGE)


def filters_of(query: EventQuery) -> dict:
    """The filters as query parameters, for the live refresh and the links."""
    pairs = {"type": query.type, "name": query.name, "userId": query.user_id, "messageId": query.message_id}
    return {k: v for k, v in pairs.items() if v}


def events(store, query: EventQuery) -> list:
    return store.events(query)


# --------------------------------------------------------------------------- one delivery

def delivery(record, setup) -> dict:
    """A delivery with its requests: the one recorded (dead letters keep it), or else the request the
    current mapping makes from the event, said to be so."""
    requests, rendered_now, note = [], False, None
    if record.request:
        requests = [record.request]
    elif record.state != INTAKE and record.destination != INTAKE and isinstance(record.event, dict):
        route = next((r for r in setup.routes if r.destination.slug == record.destination), None)
        if route is not None:
            outcome = setup.engine.render(record.event, route)
            requests, rendered_now = [r.to_dict() for r in outcome.requests], True
            if not requests:
                note = f"the current mapping does not send this event ({outcome.status}: {outcome.reason or ''})"
    return {"record": record, "requests": requests, "rendered_now": rendered_now, "note": note}


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


# --------------------------------------------------------------------------- mapping tester

def samples() -> dict:
    return json.loads(resources.files(__package__).joinpath("samples.json").read_text(encoding="utf-8"))


@dataclass
class Trial:
    """The tester's answer for one event and destination."""

    status: str
    reason: str | None
    errors: list
    requests: list
    fields: list
    text: str                  # the outcome as 'eventmap render' prints it (masked)


def tester(setup, form: dict, run: bool, masker) -> dict:
    routes = {r.destination.slug: r for r in setup.routes}
    chosen = (form.get("destination") or [""])[0] or next(iter(routes), "")
    sample = (form.get("sample") or [""])[0]
    examples = samples()
    text = (form.get("event") or [""])[0]
    if not text.strip() or (sample in examples and not run):
        text = pretty(examples.get(sample) or examples["track"])
    values = {"destinations": [(name, masker.text(_masked_settings(r))) for name, r in routes.items()],
              "chosen": chosen, "samples": list(examples), "sample": sample, "event_text": text,
              "trial": None, "problem": None}
    if not run:
        return values
    route = routes.get(chosen)
    if route is None:
        values["problem"] = f"destination: {chosen!r} is not configured (configured: {', '.join(routes) or 'none'})"
        return values
    try:
        event = jsoncodec.loads_bounded(text)
    except json.JSONDecodeError as exc:
        values["problem"] = f"event:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        return values
    if not isinstance(event, dict):
        values["problem"] = "event: expected a JSON object (one Segment event)"
        return values
    try:
        explained = explain(setup.engine, route, event)
    except ConfigError as exc:
        values["problem"] = "; ".join(str(p) for p in exc.problems)
        return values
    outcome = explained.outcome.to_dict()
    values["trial"] = masked(masker, Trial(outcome["status"], outcome["reason"], outcome["errors"], outcome["requests"],
                                        [(f.path, f.expression, _field_value(f)) for f in explained.fields],
                                        pretty(outcome)))
    values["rejected"] = explained.outcome.status == OUTCOME_REJECTED
    return values


def _masked_settings(route) -> str:
    return pretty(Masker(route.secrets).data(route.settings))


def _field_value(item) -> str:
    return shown(item)
