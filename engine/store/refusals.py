"""Requests the server refused at the door, as the store keeps a sample of them for the console.

A wrong write key (401), a refused origin (403), bad JSON (400), a body too large (413),
a busy store or a full inbox (429), a misdirected host (421): none of these reaches the
store as an event, so without this the console cannot show them and a browser SDK with
a wrong key fails silently as far as anyone looking is concerned.

A refused request must not cost a write of its own (a flood of them would then be a flood
of writes), so each server process counts them in memory and writes what it saw at most
once a second (``engine/serve/refusal_log.py``), and rows are counted per kind and hour as
tracking-plan violations are: one row per (status, code, path, source or key prefix,
origin, client address) and hour, however many requests it stands for. The table keeps at
most ``KEPT`` rows, the most recent, and is pruned with the finished deliveries.

Both backends share this module's rows and statements; ``mark`` is the driver's
placeholder (``?`` for SQLite, ``%s`` for PostgreSQL).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

HOUR = 3600.0
KEPT = 1000                 # rows the table keeps at most: the most recent
TEXT_LIMIT = 300            # characters kept of a reason, path, origin or user agent


@dataclass
class Refusal:
    """Requests refused alike (same status, code, path, source or key prefix, origin and client address):
    how many, the first and last time, and the latest reason."""

    status: int
    code: str                    # the error code the client got: unauthorized, origin_refused, invalid_json, ...
    reason: str                  # the message the client got (never holds a write key)
    path: str                    # masked: a settings or script path carries a write key
    source: str | None = None    # the source whose write key came with it, when the key was right
    key_prefix: str | None = None  # the first characters of a key no source has, never the whole key
    origin: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    count: int = 1
    first_at: float = 0.0
    last_at: float = 0.0

    def group(self) -> tuple:
        """What makes two refusals the same kind (their reasons may differ in detail, say a JSON position)."""
        return (self.status, self.code, self.path, self.source, self.key_prefix, self.origin, self.ip, self.user_agent)


def key_prefix(key: str | None) -> str | None:
    """A few characters of a write key no source has, enough to tell which wrong key a client sends and
    never enough to be the key: 4 characters of a key of 12 or more, none of a shorter one."""
    if not key:
        return None
    return f"{key[:4]}… ({len(key)} characters)" if len(key) >= 12 else f"({len(key)} characters)"


def hour_of(at: float) -> float:
    return float(int(at // HOUR) * HOUR)


COLUMNS = ("key, hour, status, code, reason, path, source, key_prefix, origin, ip, user_agent, count, first_at,"
           " last_at")


def rows(refusals: list[Refusal], text=lambda value: value) -> list[tuple]:
    """The upsert rows of one write, one per kind and hour, in key order (two writers take their row locks
    in one order, so they cannot deadlock); ``text``: the backend's fix for what its text cannot hold."""
    found: dict[tuple[str, float], list] = {}
    for r in refusals:
        key = hashlib.blake2b(repr(r.group()).encode("utf-8", "replace"), digest_size=16).hexdigest()
        hour = hour_of(r.first_at)
        row = found.get((key, hour))
        if row is None:
            found[(key, hour)] = [key, hour, r.status, _cut(r.code, 64, text), _cut(r.reason, TEXT_LIMIT, text),
                                  _cut(r.path, TEXT_LIMIT, text), _cut(r.source, TEXT_LIMIT, text),
                                  _cut(r.key_prefix, 64, text), _cut(r.origin, TEXT_LIMIT, text),
                                  _cut(r.ip, 64, text), _cut(r.user_agent, TEXT_LIMIT, text),
                                  r.count, r.first_at, r.last_at]
        else:
            row[11] += r.count
            if r.last_at >= row[13]:   # the latest reason wins, as in the table
                row[4] = _cut(r.reason, TEXT_LIMIT, text)
            row[12], row[13] = min(row[12], r.first_at), max(row[13], r.last_at)
    return [tuple(found[k]) for k in sorted(found)]


def upsert(mark: str) -> str:
    """Add a write's counts to the hour's rows; the latest reason wins."""
    marks = ", ".join([mark] * 14)
    return (f"INSERT INTO refusals({COLUMNS}) VALUES ({marks}) ON CONFLICT (key, hour) DO UPDATE SET"
            f" count = refusals.count + excluded.count, reason = excluded.reason,"
            f" last_at = CASE WHEN excluded.last_at > refusals.last_at THEN excluded.last_at ELSE refusals.last_at END")


def trim(mark: str) -> tuple[str, int]:
    """Keep the ``KEPT`` most recent rows: the statement, and its parameter."""
    return (f"DELETE FROM refusals WHERE last_at < (SELECT last_at FROM refusals ORDER BY last_at DESC"
            f" LIMIT 1 OFFSET {mark})", KEPT - 1)


def select(mark: str, since: float | None, limit: int) -> tuple[str, list]:
    where, params = ("last_at >= " + mark, [since]) if since is not None else ("1 = 1", [])
    return (f"SELECT status, code, reason, path, source, key_prefix, origin, ip, user_agent, count, first_at, last_at"
            f" FROM refusals WHERE {where} ORDER BY last_at DESC, key LIMIT {mark}", [*params, limit])


def _cut(value: str | None, limit: int, text) -> str | None:
    """At most ``limit`` characters the backend can hold: a lone surrogate (a JSON body's key may carry one)
    becomes '?', so one odd request cannot make the write of every refusal with it fail."""
    if value is None:
        return None
    value = value if len(value) <= limit else value[:limit - 1] + "…"
    return text(value.encode("utf-8", "replace").decode("utf-8"))
