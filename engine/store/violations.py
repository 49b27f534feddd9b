"""Tracking-plan violations as the store keeps them: counted per hour, with one example each.

A row is one (source, event, rule, path, action) in one hour: how many events
broke that rule there, and the first of them whole, as received (the example a
person looks at). So the table grows with the variety of violations, not their
number: a flood of one broken event adds to one counter an hour. Array positions
in paths are folded (``properties.products[].price``) for the same reason. Rows
are written in the transaction that accepts their events, and pruned with the
finished deliveries (``delivery.keep_done_for``).

Both backends share this module's rows and statements; ``mark`` is the
driver's placeholder (``?`` for SQLite, ``%s`` for PostgreSQL).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

HOUR = 3600.0
_POSITION = re.compile(r"\[\d+\]")


@dataclass
class NewViolation:
    """One way an event breaks its source's tracking plan (``validate.plan.Breach``), and the event as received."""

    source: str
    event: str                   # the track's name, or (identify traits) / (group traits)
    rule: str                    # a JSON Schema keyword, or 'unplanned'
    path: str                    # where in the event: properties.total
    message: str
    action: str                  # what was done: warn, drop_properties or block
    example: object = None       # the event as received, before anything was dropped
    message_id: str | None = None


@dataclass
class ViolationQuery:
    """Which violations to list: every field given must match; ``since`` counts only hours from then on."""

    source: str | None = None
    event: str | None = None
    since: float | None = None
    limit: int = 100


@dataclass
class ViolationRecord:
    """Violations of one rule at one path of one event, summed over the hours asked for."""

    source: str
    event: str
    rule: str
    path: str
    action: str
    count: int
    first_at: float
    last_at: float
    message: str                 # the example's
    message_id: str | None
    example: object              # the latest hour's first event


def hour_of(at: float) -> float:
    return float(int(at // HOUR) * HOUR)


def rows(violations: list[NewViolation], now: float, dumps) -> list[tuple]:
    """The upsert rows of one accepted batch: one per key and hour, counted, in key order (two writers
    updating the same rows take their locks in one order, so they cannot deadlock)."""
    found: dict[str, list] = {}
    hour = hour_of(now)
    for v in violations:
        path = _POSITION.sub("[]", v.path)
        key = hashlib.blake2b("\x1f".join((v.source, v.event, v.rule, path, v.action)).encode("utf-8", "replace"),
                              digest_size=16).hexdigest()   # the names may be long: index 32 characters, not them
        if key in found:
            found[key][6] += 1
        else:
            found[key] = [key, hour, v.source, v.event, v.rule, path, 1, now, now, v.action, v.message,
                          v.message_id, v]
    ordered = [found[key] for key in sorted(found)]
    return [(*row[:12], dumps(row[12].example)) for row in ordered]


# The columns ``rows`` fills, in order.
COLUMNS = "key, hour, source, event, rule, path, count, first_at, last_at, action, message, message_id, example"


def upsert(mark: str, cast_json: str = "") -> str:
    """Add a batch's counts to the hour's rows; a new row keeps its first example."""
    marks = ", ".join([mark] * 12 + [mark + cast_json])
    return (f"INSERT INTO violations({COLUMNS}) VALUES ({marks}) ON CONFLICT (key, hour) DO UPDATE SET"
            f" count = violations.count + excluded.count, last_at = excluded.last_at")


def filters(query: ViolationQuery, mark: str) -> tuple[str, list]:
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    for column, value in (("source", query.source), ("event", query.event)):
        if value:
            where.append(f"{column} = {mark}")
            params.append(value)
    if query.since is not None:
        where.append(f"hour >= {mark}")
        params.append(hour_of(query.since))
    return " AND ".join(where), params


def summary(query: ViolationQuery, mark: str) -> tuple[str, list]:
    """Each key's counts over the hours asked for, the latest first; the last column is its latest hour."""
    where, params = filters(query, mark)
    return (f"SELECT key, source, event, rule, path, action, SUM(count), MIN(first_at), MAX(last_at), MAX(hour)"
            f" FROM violations WHERE {where} GROUP BY key, source, event, rule, path, action"
            f" ORDER BY MAX(last_at) DESC, key LIMIT {mark}", [*params, query.limit])


def examples(latest: list[tuple[str, float]], mark: str) -> tuple[str, list]:
    """The message, message id and example of each (key, hour)."""
    pairs = ", ".join(f"({mark}, {mark})" for _ in latest)
    return (f"SELECT key, message, message_id, example FROM violations WHERE (key, hour) IN (VALUES {pairs})",
            [value for pair in latest for value in pair])


COUNTS = "SELECT source, event, rule, SUM(count) FROM violations GROUP BY source, event, rule"


def records(summaries: list[tuple], found: dict[str, tuple], loads) -> list[ViolationRecord]:
    """ViolationRecords from ``summary`` rows and ``examples`` rows by key."""
    out = []
    for key, source, event, rule, path, action, count, first_at, last_at, _ in summaries:
        message, message_id, example = found.get(key, ("", None, None))
        out.append(ViolationRecord(source, event, rule, path, action, int(count), first_at, last_at, message,
                                   message_id, loads(example) if isinstance(example, (str, bytes)) else example))
    return out
