"""What the rest of eventmap may know about durable storage: this interface and its records.

An accepted event is written once, with one *delivery* row per configured
destination. A delivery is in exactly one state (``engine/states.py`` names them).

Workers *lease* due deliveries of one destination for a while; a worker that
dies lets its lease expire and another picks the work up. Times are seconds
since the epoch as floats and are always passed in, so tests can use a fake
clock. Nothing outside ``engine.store`` imports a backend module.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import jsoncodec
from ..answers import ANSWER_LIMIT, EXCERPT, describe_bytes
from ..durations import describe_seconds
from ..problems import EventmapError
from ..states import (  # noqa: F401  (re-exported: the store's callers name states through engine.store)
    DEAD,
    DELIVERED,
    DRY_RUN,
    FINAL,
    INTAKE,
    PENDING,
    PRUNABLE,
    QUEUED,
    REJECTED,
    REPLAY_ABANDONED,
    REPLAY_DONE,
    REPLAY_FINAL,
    REPLAY_RUNNING,
    REPLAY_STATES,
    REPLAY_STOPPED,
    RETRYING,
    SENT_STATES,
    SKIPPED,
    STATES,
)
from . import refusals as refusal_rows
from .group import GroupCommit
from .refusals import Refusal
from .violations import NewViolation, ViolationQuery, ViolationRecord
from .wake import Hear, Notifier, Silent

# PENDING and PRUNABLE as SQL lists written into the statements: the planners use the partial indexes
# on "state IN (...)" only when the states are literals, not bound parameters.
PENDING_SQL = "(" + ", ".join(f"'{state}'" for state in PENDING) + ")"
PRUNABLE_SQL = "(" + ", ".join(f"'{state}'" for state in PRUNABLE) + ")"


# delivery or event ids; a name of its own because Store.list shadows the builtin inside the class
Ids = list[int]
Names = list[str]
Rows = list[Any]   # rows of a read: tuples, as the driver gives them

@dataclass
class NewDelivery:
    """What intake decided for one destination: queue it, or record why not."""

    destination: str
    state: str = QUEUED          # QUEUED, SKIPPED or REJECTED
    reason: str | None = None
    errors: list | None = None   # [{"path", "message"}] for REJECTED


@dataclass
class NewEvent:
    event: object                # the event as accepted (JSON-able)
    message_id: str | None
    deliveries: list[NewDelivery]
    violations: list[NewViolation] = field(default_factory=list)   # of its source's tracking plan
    source: str | None = None    # the source it came in from (a write key's or a webhook's); from enqueue, --source's
    archive: bool = False        # an accepted Segment event, which a replay may send again (engine/replay.py):
                                 # intake sets it; a rejected event or a webhook payload keeps False


@dataclass
class Accepted:
    """What the store did with one NewEvent: its id and each delivery's id and state."""

    event_id: int
    deliveries: list[tuple[int, str, str]]   # (delivery id, destination, state)


@dataclass
class Received:
    """A Segment API request kept whole in the inbox (``server.intake: queue``) until a processor turns
    it into events and deliveries; ``body`` is its JSON as received (decompressed, write key removed)."""

    call: str                    # batch, track, identify, ...
    body: bytes
    received_at: float
    ip: str | None = None        # the client's address, as the server decided it (trusted proxies)
    id: int = 0                  # set by the store
    source: str | None = None    # the SDK source whose write key came with it (its tracking plan applies)

    def __repr__(self) -> str:
        return f"<Received {self.id} {self.call} {len(self.body)} bytes>"


@dataclass
class Leased:
    """A due delivery handed to one worker until ``lease_until``."""

    id: int
    destination: str
    message_id: str | None
    event: Any                   # a JSON object: intake stores nothing else under a destination
    attempts: int                # attempts made before this lease
    first_at: float              # when it was (re)queued: the retry horizon counts from here
    progress: dict | None = None  # a multi-step action: {step name: {"status", "body"}} of steps done


@dataclass(eq=False)   # compared by identity: the deliveries of one batch share one, written once
class SentRequest:
    """A request as it went over the wire, secrets masked and its size bounded (``recorded``), and how many
    deliveries it carried: a batch request is kept once, and each of its deliveries' attempts points at it."""

    request: dict                # method, url, headers, query, body (masked; the body an excerpt past the bound)
    events: int = 1              # deliveries it carried: the delivery and its siblings
    id: int = 0                  # set when read back from the store
    destination: str = ""
    at: float = 0.0
    deliveries: list[int] = field(default_factory=list)   # when read: the first few deliveries it carried
    text: str = ""               # ``request`` as JSON, when made by ``recorded``: the store writes it as it is

    def __repr__(self) -> str:
        return f"<SentRequest {self.id or ''} {self.events} events>"

    @classmethod
    def recorded(cls, request: dict, events: int, destination: str) -> SentRequest:
        """``request`` (masked already) as the store keeps it: whole up to ``ANSWER_LIMIT`` of JSON, past it
        with the body cut to an excerpt that says so, the policy vendors' answers have. Written as JSON once,
        here: the store keeps that text."""
        text = jsoncodec.dumps(request)
        if len(text) > ANSWER_LIMIT // 4 and len(text.encode("utf-8", "surrogatepass")) > ANSWER_LIMIT:
            body = request.get("body")
            whole = body if isinstance(body, str) else jsoncodec.dumps(body)
            request = {**request, "body": f"{whole[:EXCERPT]}... (cut: the request is over "
                                          f"{describe_bytes(ANSWER_LIMIT)}, the most eventmap keeps of one it sent)"}
            text = jsoncodec.dumps(request)
        return cls(request, events, destination=destination, text=text)


@dataclass
class Attempt:
    """One HTTP try for one delivery (a batch request records one per delivery in it)."""

    at: float
    status: int | None           # HTTP status, None when there was no answer
    error: str | None            # masked
    duration: float = 0.0
    step: str | None = None      # which step of a multi-step action
    sent_id: int | None = None   # read back: the request it sent (DeliveryRecord.sent), None where not recorded
    sent: SentRequest | None = field(default=None, compare=False)   # to write: the request it sent


@dataclass
class Finish:
    """A worker's verdict on a leased delivery."""

    id: int
    state: str                   # DELIVERED, DRY_RUN, RETRYING, DEAD, REJECTED or SKIPPED
    attempt: Attempt | None = None
    next_at: float | None = None  # for RETRYING
    reason: str | None = None
    errors: list | None = None
    request: dict | None = None   # the last request, secrets masked


@dataclass
class DeliveryRecord:
    """One delivery as ``eventmap deliveries`` shows it."""

    id: int
    event_id: int
    destination: str
    message_id: str | None
    state: str
    attempts: int
    created_at: float
    updated_at: float
    next_at: float | None
    reason: str | None
    errors: list | None
    last_status: int | None
    last_error: str | None
    request: dict | None = None
    event: object = None
    history: list[Attempt] = field(default_factory=list)
    progress: dict | None = None  # answers of the steps done (multi-step actions)
    sent: SentRequest | None = None  # the request its latest recorded attempt sent (``get`` only)

    @property
    def tried(self) -> bool:
        """Whether a request went out for it (``get``): with no ``sent`` beside, that request was not recorded
        (``NOT_RECORDED``)."""
        return bool(self.history) or self.state in SENT_STATES


# What the console and 'eventmap deliveries show' say of a delivery that sent a request none recorded: never a
# request rebuilt from today's mapping in its place.
NOT_RECORDED = ("the request sent was not recorded: it went out before this version of eventmap recorded"
                " requests, or it was pruned")


@dataclass
class EventRecord:
    """One accepted event with what happened to it at each destination (the console's Events page)."""

    id: int
    message_id: str | None
    received_at: float
    event: object
    deliveries: list[DeliveryRecord] = field(default_factory=list)


@dataclass
class EventQuery:
    """Which events to list: every field given must match (exact match, never a pattern)."""

    type: str | None = None
    name: str | None = None        # a track's event, or a page's or screen's name
    user_id: str | None = None
    message_id: str | None = None
    destination: str | None = None  # events with a delivery to this destination ...
    state: str | None = None       # ... (or to any) in this state
    since: float | None = None     # received at or after
    until: float | None = None     # received before
    before_id: int | None = None   # paging: only events older than this one
    limit: int = 50

    @property
    def by_delivery(self) -> bool:
        """Found through the deliveries' index (destination, state, event) rather than by walking events."""
        return bool(self.destination or self.state)


@dataclass
class Archived:
    """One event of the archive, as a replay reads it: every accepted Segment event is kept until its
    deliveries are pruned and it is older than ``delivery.archive_for``."""

    id: int
    received_at: float
    message_id: str | None
    source: str | None
    event: Any


@dataclass
class Replay:
    """A replay of archived events through today's mappings (``engine/replay.py``), as the store records it.

    It covers the archived events with ids ``first_id`` to ``last_id`` (fixed when it began) received
    within [since, until); every one up to ``after_id`` is done, its deliveries written in the same
    transaction as that progress, so a replay resumed after a crash enqueues no event twice."""

    id: int
    state: str                   # one of REPLAY_STATES
    since: float
    until: float
    source: str | None
    destinations: list[str] | None   # None: every enabled destination
    where: str | None            # the JMESPath condition on events
    first_id: int
    last_id: int
    after_id: int
    events: int = 0              # archived events read so far (in range, of the source)
    matched: int = 0             # of those, the ones the condition let through (all, without one)
    counts: dict = field(default_factory=dict)   # {destination: {"replayed": n, "skipped": n, "rejected": n, ...}}
    owner: str | None = None     # the process running it (or that ran it last)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def share(self) -> float:
        """How far through its range of ids it is, 0 to 1."""
        if self.state == REPLAY_DONE:
            return 1.0
        return min(1.0, max(0.0, (self.after_id - self.first_id + 1) / max(1, self.last_id - self.first_id + 1)))


@dataclass
class ReplayStep:
    """One chunk of a replay: where it ends, the replay's totals after it, and the deliveries it enqueues."""

    after_id: int
    events: int
    matched: int
    counts: dict
    deliveries: list[tuple[int, str | None, NewDelivery]]   # (event id, messageId, delivery)
    # archived event id -> the event as today's tracking plan made it (properties dropped): the deliveries of
    # that archived event send this copy, kept as an event of its own (not archived: never replayed itself)
    copies: dict[int, object] = field(default_factory=dict)


REPLAY_FINAL_SQL = "(" + ", ".join(f"'{state}'" for state in REPLAY_FINAL) + ")"

EventRecords = list[EventRecord]             # names for the return types of the methods after Store.list
ArchivedEvents = list[Archived]
Replays = list[Replay]
ViolationRecords = list[ViolationRecord]
Refusals = list[Refusal]
Timeline = list[tuple[float, int, int]]      # (bucket start, succeeded, failed)
Answers = dict[str, list[tuple[int | None, int, str | None, float]]]   # see Store.answers

# Skip reasons that name one event (its messageId) are grouped under one label in ``reasons``.
DUPLICATE = "duplicate: messageId already accepted within the dedupe window"


class Store(ABC):
    """Durable storage for accepted events and their deliveries (SQLite or PostgreSQL)."""

    @abstractmethod
    def accept(self, events: list[NewEvent], now: float, dedupe_window: float = 0.0) -> list[Accepted]:
        """Write events and their deliveries in one transaction; durable when this returns.

        An event whose messageId was accepted (with something queued) within
        ``dedupe_window`` seconds is a duplicate: its QUEUED deliveries become
        SKIPPED, atomically, even with several writers (``claims_wanted``).
        """

    # each backend makes it in its __init__: GroupCommit(self._receive_group)
    _receiving: GroupCommit[list[Received], None]

    def receive(self, requests: list[Received]) -> None:
        """Keep whole requests in the inbox, in one transaction; durable when this returns. Requests
        received together from several threads share one transaction (``group.GroupCommit``)."""
        if requests:
            self._receiving.run(requests)

    def receive_later(self, requests: list[Received], then: Callable[[BaseException | None], None]) -> None:
        """``receive`` without waiting for the disk, for a caller on an event loop: returns at once, and
        ``then(None)`` is called from a store thread once the requests are durable, ``then(error)`` if
        they could not be written. ``then`` must be quick (hand the outcome over and return)."""
        self._receiving.submit(requests, lambda _result, error: then(error))

    @abstractmethod
    def take_received(self, limit: int, owner: str, now: float, lease_for: float) -> list[Received]:
        """Up to ``limit`` requests from the inbox, oldest first, leased to ``owner`` (no two processors
        take the same one); [] at once, without a write, when none is waiting."""

    def accept_received(self, ids: Ids, owner: str, events: list[NewEvent], now: float,
                        dedupe_window: float = 0.0) -> list[Accepted] | None:
        """``accept`` the events made from inbox requests ``ids`` and remove those requests, in one
        transaction: each request becomes its events exactly once. None (nothing written) when the
        lease on any of them was lost to another processor."""
        try:
            with self._write() as conn:
                if self._remove_received(conn, ids, owner) != len(ids):
                    raise LeaseLost   # rolls the removal back
                accepted = self._insert(conn, events, now, dedupe_window) if events else []
        except LeaseLost:
            return None
        self._wake(queued_in(accepted))
        return accepted

    # each backend makes it in its __init__: Notifier(a function that tells its listeners)
    _wakes: Notifier

    def listen(self, hear: Hear):
        """Call ``hear(names)`` from a thread of the store's whenever any process commits work for the queues
        ``names`` (None: any queue), until the returned object's ``close()``. A wake-up only hurries a worker:
        one may be lost (a reconnect, a full pipe), so workers still poll, seldom (``wake.py``)."""
        return Silent()

    def _wake(self, names: set[str]) -> None:
        """Tell the listeners, soon and without waiting, that the queues ``names`` have new work; called once that
        work is committed (a listener woken sooner would find nothing)."""
        if names:
            self._wakes.add(names)

    # what each backend provides for the shared methods above
    @abstractmethod
    def _receive_group(self, jobs: list[list[Received]]) -> list[None]:
        """Every job's requests into the inbox in one transaction (the group commit's write)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction: its connection, committed (durable) on leaving, rolled back on an error."""

    @abstractmethod
    def _insert(self, conn, events: list[NewEvent], now: float, window: float) -> list[Accepted]:
        """Write events and their deliveries in the open transaction ``conn`` (the body of ``accept``)."""

    @abstractmethod
    def _remove_received(self, conn, ids: Ids, owner: str) -> int:
        """Delete the inbox requests ``ids`` that ``owner`` still holds; how many."""

    @abstractmethod
    def waiting_requests(self) -> int:
        """Requests in the inbox, taken or not: the queue mode's backlog."""

    @abstractmethod
    def inbox_size(self) -> tuple[int, int]:
        """(requests, bytes of their bodies) in the inbox, taken or not: what ``server.inbox_max_requests`` and
        ``server.inbox_max_mb`` bound. One scan of the inbox's rows (not of the bodies): read it now and then."""

    @abstractmethod
    def lease(self, destination: str, limit: int, owner: str, now: float, lease_for: float) -> list[Leased]:
        """Up to ``limit`` due deliveries of ``destination``, oldest first, no two workers the same."""

    @abstractmethod
    def finish(self, results: list[Finish], owner: str, now: float) -> int:
        """Record verdicts for deliveries this owner still leases; returns how many applied."""

    @abstractmethod
    def step_done(self, delivery_id: int, owner: str, progress: dict, attempt: Attempt, now: float,
                  lease_until: float | None = None) -> bool:
        """Record one completed step of a multi-step action, with the answers of every step done so far
        (masked), in one transaction; a retry resumes after them. ``lease_until`` renews the lease, so
        an event of many steps keeps it while it makes progress. False: the lease was lost."""

    @abstractmethod
    def release(self, owner: str, ids: Ids | None = None) -> int:
        """Give back leases of ``owner`` (these delivery ids, or all of them, inbox requests included, at a
        clean shutdown) so others may take them now; the deliveries keep their state and attempts."""

    @abstractmethod
    def next_due(self, destinations: list[str], now: float) -> float | None:
        """When the earliest pending, unleased delivery of these destinations is due; None if none."""

    @abstractmethod
    def counts(self, now: float) -> dict[str, dict[str, int]]:
        """{destination: {state: n, "in_flight": n}} over every delivery kept."""

    @abstractmethod
    def list(self, destination: str | None = None, state: str | None = None, limit: int = 50,
             after_id: int = 0) -> list[DeliveryRecord]:
        """Deliveries by id, optionally of one destination and state (no event bodies)."""

    @abstractmethod
    def get(self, delivery_id: int) -> DeliveryRecord | None:
        """One delivery with its event, last request and every attempt."""

    # --- reads both backends run alike: the same SQL through ``_rows`` with the backend's placeholder
    _mark = "?"
    _bucket = "CAST(at / ? AS INTEGER)"   # an attempt's time bucket, ``at`` over the bucket's seconds, rounded down

    @abstractmethod
    def _rows(self, sql: str, params=()) -> Rows:
        """Every row of one read."""

    @staticmethod
    def _text(value: str | None) -> str | None:
        """Text the backend can hold (PostgreSQL's cannot hold NUL)."""
        return value

    def events(self, query: EventQuery) -> EventRecords:
        """The latest events matching ``query``, newest first, each with its deliveries (no requests or
        attempts): at most ``query.limit``. Found through indexes: messageId and userId, the deliveries'
        (destination, state, event_id) when a destination or state is asked for, and a time range turned
        into a range of ids (``id_bounds``); otherwise by walking the events newest first."""
        m = self._mark
        bounds: tuple[int | None, int | None] = (None, None)
        if query.since is not None or query.until is not None:
            bounds = id_bounds(query, self._first_event_from, self._rows("SELECT MAX(id) FROM events")[0][0])
        if query.by_delivery:
            pairs = walk_pairs(query, self.destinations())
            if not pairs:
                return []
            sql, params = delivery_walk(query, pairs, bounds, m)
            ids = [row[0] for row in self._rows(sql, params)]
            rows = self._rows(f"SELECT id, message_id, received_at, body FROM events WHERE id IN"
                              f" ({', '.join([m] * len(ids))}) ORDER BY id DESC", ids) if ids else []
        else:
            where, params = event_filters(query, m, bounds)
            rows = self._rows(f"SELECT id, message_id, received_at, body FROM events WHERE {where}"
                              f" ORDER BY id DESC LIMIT {m}", [*params, query.limit])
        found = [EventRecord(r[0], r[1], r[2], loads_json(r[3])) for r in rows]
        if found:
            by_id = {e.id: e for e in found}
            for row in self._rows(f"SELECT {RECORD_COLUMNS} FROM deliveries WHERE event_id IN"
                                  f" ({', '.join([m] * len(by_id))}) ORDER BY id", [*by_id]):
                record = record_of(row)
                by_id[record.event_id].deliveries.append(record)
        return found

    def _first_event_from(self, event_id: int) -> tuple[int, float] | None:
        rows = self._rows(f"SELECT id, received_at FROM events WHERE id >= {self._mark} ORDER BY id LIMIT 1", [event_id])
        return (rows[0][0], rows[0][1]) if rows else None

    def destinations(self) -> Names:
        """Every destination name with a delivery kept, in name order: one index step per name (the index
        on (destination, state, event_id) read as a loose index scan), not a read of every row."""
        return [row[0] for row in self._rows(
            "WITH RECURSIVE names(name) AS (SELECT MIN(destination) FROM deliveries UNION ALL"
            " SELECT (SELECT MIN(d.destination) FROM deliveries d WHERE d.destination > names.name) FROM names"
            " WHERE names.name IS NOT NULL) SELECT name FROM names WHERE name IS NOT NULL")]

    def reasons(self, state: str = SKIPPED, limit: int = 100) -> dict[str, dict[str, int]]:
        """{destination: {reason: n}} for deliveries in ``state``, the most frequent first (at most ``limit``
        per destination); duplicates share the one reason ``DUPLICATE``. Each destination's rows are read
        through the index on (destination, state, ...), never every delivery."""
        m = self._mark
        result: dict[str, dict[str, int]] = {}
        for destination in self.destinations():
            for reason, n in self._rows(
                    f"SELECT CASE WHEN reason LIKE {m} THEN {m} ELSE COALESCE(reason, '') END AS r, COUNT(*) AS n"
                    f" FROM deliveries WHERE destination = {m} AND state = {m} GROUP BY r ORDER BY n DESC, r"
                    f" LIMIT {m}", ("duplicate:%", DUPLICATE, destination, state, limit)):
                result.setdefault(destination, {})[reason] = int(n)
        return result

    def answers(self, state: str = RETRYING, destinations: Names | None = None) -> Answers:
        """Why deliveries in ``state`` are there, by their last answer: {destination: [(last status, how many,
        the latest one's error, its time)]}, the most frequent status first (None: no answer)."""
        m = self._mark
        result: Answers = {}
        for destination in self.destinations() if destinations is None else destinations:
            groups = self._rows(f"SELECT last_status, COUNT(*) AS n, MAX(id) FROM deliveries WHERE destination = {m}"
                                f" AND state = {m} GROUP BY last_status ORDER BY n DESC LIMIT 10", (destination, state))
            if not groups:
                continue
            latest = {row[0]: (row[1], row[2]) for row in self._rows(
                f"SELECT id, last_error, updated_at FROM deliveries WHERE id IN ({', '.join([m] * len(groups))})",
                [g[2] for g in groups])}
            result[destination] = [(status, int(n), *latest.get(last, (None, 0.0))) for status, n, last in groups]
        return result

    def timeline(self, since: float, bucket: float, destination: str | None = None) -> Timeline:
        """Attempts since ``since`` per ``bucket`` seconds, oldest first: (bucket start, succeeded, failed).
        Buckets without attempts are left out. Read from the covering index on (at, destination, status)."""
        m = self._mark
        where, params = (f"at >= {m} AND destination = {m}", [since, destination]) if destination \
            else (f"at >= {m}", [since])
        rows = self._rows(f"SELECT {self._bucket} AS b, SUM({_OK}), SUM({_FAILED}) FROM attempts WHERE {where}"
                          f" GROUP BY b ORDER BY b", [bucket, *params])
        return [(float(b * bucket), int(ok), int(failed)) for b, ok, failed in rows]

    def timelines(self, since: float, bucket: float) -> dict[str, Timeline]:
        """``timeline`` for every destination at once: {destination: timeline}, one read of the attempts."""
        result: dict[str, Timeline] = {}
        for destination, b, ok, failed in self._rows(
                f"SELECT destination, {self._bucket} AS b, SUM({_OK}), SUM({_FAILED}) FROM attempts"
                f" WHERE at >= {self._mark} GROUP BY destination, b ORDER BY destination, b", [bucket, since]):
            result.setdefault(destination or "", []).append((float(b * bucket), int(ok), int(failed)))
        return result

    def sent_request(self, sent_id: int) -> SentRequest | None:
        """A request as it was sent, with the first ``SIBLINGS`` deliveries it carried; None when pruned."""
        m = self._mark
        rows = self._rows(f"SELECT id, destination, at, events, request FROM sent_requests WHERE id = {m}", [sent_id])
        if not rows:
            return None
        sent_id, destination, at, events, request = rows[0]
        carried = [row[0] for row in self._rows(f"SELECT DISTINCT delivery_id FROM attempts WHERE sent_id = {m}"
                                                f" ORDER BY delivery_id LIMIT {m}", [sent_id, SIBLINGS])]
        return SentRequest(loads_json(request), events, sent_id, destination, at, carried)

    def refused(self, refusals: Refusals) -> None:
        """Add requests refused at the door to the sample the console shows (store/refusals.py), in one
        transaction, keeping the most recent ``refusals.KEPT`` rows."""
        if not refusals:
            return
        sql, keep = refusal_rows.trim(self._mark)
        with self._write() as conn:
            conn.cursor().executemany(refusal_rows.upsert(self._mark), refusal_rows.rows(refusals, self._text))
            conn.execute(sql, (keep,))

    def refusals(self, since: float | None = None, limit: int = 100) -> Refusals:
        """The sample of refused requests, the most recent first: one Refusal per kind and hour."""
        sql, params = refusal_rows.select(self._mark, since, limit)
        return [Refusal(*row) for row in self._rows(sql, params)]

    @abstractmethod
    def requeue(self, now: float, ids: Ids | None = None, destination: str | None = None,
                state: str = DEAD) -> int:
        """Put final deliveries (dead by default) back in the queue, due now, with a fresh horizon. Their
        reason and errors were the last round's verdict and are cleared (the attempts keep the history);
        ``last_status`` and ``last_error`` stay, the latest answer, until the next attempt."""

    @abstractmethod
    def hurry(self, destination: str, now: float) -> int:
        """Make every retrying, unleased delivery of ``destination`` due now (the destination recovered from an
        outage: what waited on its own backoff goes out together, in full batches); returns how many."""

    @abstractmethod
    def prune(self, before: float, batch: int = 1000, archive_before: float | None = None) -> int:
        """Delete delivered/dry_run/skipped/rejected deliveries finished before ``before``, and events left
        without deliveries that were received before ``archive_before`` (the archive's horizon, default
        ``before``), ``batch`` rows per transaction; dead letters are kept. Returns deliveries deleted."""

    # --- the archive and replays (engine/replay.py)
    @abstractmethod
    def archive_bounds(self, since: float, until: float) -> tuple[int, int] | None:
        """(first id, last id) of the archived events received within [since, until); None when there are none."""

    @abstractmethod
    def archived(self, after_id: int, last_id: int, since: float, until: float, source: str | None,
                 limit: int) -> ArchivedEvents:
        """Up to ``limit`` archived events with ids after ``after_id`` up to ``last_id``, received within
        [since, until) (and from ``source`` when given), in id order: one page of a replay, read by key."""

    @abstractmethod
    def start_replay(self, replay: Replay, now: float) -> Replay:
        """Record a new replay (running, owned by ``replay.owner``); returns it with its id."""

    @abstractmethod
    def replay_step(self, replay_id: int, owner: str, after_id: int, step: ReplayStep, now: float) -> bool:
        """In one transaction: the step's deliveries (new ids, due now, no dedupe) and the replay's progress,
        only if ``owner`` still runs it and it is still at ``after_id``; False (nothing written) otherwise."""

    @abstractmethod
    def take_replay(self, replay_id: int, owner: str, now: float) -> Replay | None:
        """Make ``owner`` the one running an unfinished replay (a resume); None when there is no such replay
        or it is done or abandoned. A process still running it loses it: its next step is refused."""

    @abstractmethod
    def end_replay(self, replay_id: int, owner: str | None, state: str, now: float) -> bool:
        """Set the state of an unfinished replay (done, stopped or abandoned) that ``owner`` runs (None:
        whoever does); False when there is no such replay or another has taken it."""

    @abstractmethod
    def replays(self, limit: int = 50, replay_id: int | None = None) -> Replays:
        """The latest replays, newest first (or the one with ``replay_id``)."""

    @abstractmethod
    def violations(self, query: ViolationQuery) -> ViolationRecords:
        """Tracking-plan violations matching ``query``, summed per source, event, rule, path and action over
        the hours asked for, the most recent first, each with its latest example (store/violations.py)."""

    @abstractmethod
    def violation_counts(self) -> dict[tuple[str, str, str], int]:
        """{(source, event, rule): violations} over every hour kept, for /metrics."""

    @abstractmethod
    def version(self) -> int:
        """The schema version the database is at (0: no tables yet)."""

    @abstractmethod
    def upgrade(self) -> Ids:
        """Apply the migrations the database lacks; returns their numbers. Safe to run twice."""

    @property
    def location(self) -> str:
        """Where the data lives, safe to print (a file path, or a URL with its password masked)."""
        return repr(self)

    def close(self) -> None:  # noqa: B027 - a store holding nothing need not override it
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def queued_in(accepted: list[Accepted]) -> set[str]:
    """The destinations that accepted events queued something for: the queues their write wakes."""
    return {destination for one in accepted for _, destination, state in one.deliveries if state == QUEUED}


def duplicate_reason(message_id: str, first: float, window: float) -> str:
    """The skip reason of a duplicate, the same words whichever backend noticed it."""
    when = datetime.fromtimestamp(first, UTC).isoformat(timespec="seconds")
    return (f"duplicate: messageId {message_id!r} was already accepted at {when}, "
            f"within the {describe_seconds(window)} dedupe window")


def claims_wanted(events: list[NewEvent]) -> dict[str, list[int]]:
    """{messageId: positions in ``events``} of the events that queue something and so claim their messageId.

    One claim per event, not per destination: a messageId names one message, and a duplicate of it is a
    duplicate for every destination (as Segment dedupes). An event that queues nothing (every delivery
    skipped or rejected) claims nothing, so its messageId stays free for a corrected resend."""
    wanted: dict[str, list[int]] = {}
    for position, new in enumerate(events):
        if new.message_id is not None and any(d.state == QUEUED for d in new.deliveries):
            wanted.setdefault(new.message_id, []).append(position)
    return wanted


def duplicates(wanted: dict[str, list[int]], earlier: dict[str, float], now: float) -> dict[int, float]:
    """{position: when its messageId was first accepted} for each event that is a duplicate.

    ``earlier`` holds the messageIds already claimed within the window (and when); the others were
    claimed now, by the first event in the batch that carries them."""
    found: dict[int, float] = {}
    for message_id, positions in wanted.items():
        first = earlier.get(message_id)
        for position in positions if first is not None else positions[1:]:
            found[position] = now if first is None else first
    return found


def with_duplicates(new: NewEvent, first: float | None, window: float) -> list[tuple[str, str, str | None]]:
    """(destination, state, reason) of each delivery of one event, its queued ones skipped when it is a
    duplicate (``first``: when its messageId was first accepted)."""
    if first is None:
        return [(d.destination, d.state, d.reason) for d in new.deliveries]
    reason = duplicate_reason(str(new.message_id), first, window)
    return [(d.destination, SKIPPED, reason) if d.state == QUEUED else (d.destination, d.state, d.reason)
            for d in new.deliveries]


class LeaseLost(EventmapError):
    """Rolls back ``accept_received`` when another processor has taken one of its requests."""


def inbox_free(mark: str) -> str:
    """The inbox requests no processor holds (never taken, or their lease ran out); ``mark``: the placeholder."""
    return f"SELECT id FROM inbox WHERE taken_until IS NULL OR taken_until < {mark}"


def yield_lock(held: float) -> None:
    """Between two transactions of a long job (prune): leave the write lock free at least as long as it was
    held, and 25 ms at least, longer than one step of SQLite's busy wait, so writers waiting for it (intake)
    get their turn instead of finding it taken again at each try."""
    time.sleep(max(0.025, held))


# the columns of a DeliveryRecord, in its field order, without the event, request, history and progress
RECORD_COLUMNS = ("id, event_id, destination, message_id, state, attempts, created_at, updated_at, next_at,"
                  " reason, errors, last_status, last_error")


def record_of(row) -> DeliveryRecord:
    """A DeliveryRecord from a row of ``RECORD_COLUMNS`` (errors as JSON text or parsed)."""
    values = list(row)
    values[10] = loads_json(values[10]) if values[10] else None
    return DeliveryRecord(*values)


SIBLINGS = 20   # deliveries a sent request lists of those it carried (the count says how many in all)
_OK = "CASE WHEN status BETWEEN 200 AND 299 THEN 1 ELSE 0 END"
_FAILED = "CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END"   # no answer (NULL) is a failure


# the columns of a Replay, in its field order; destinations and counts are JSON
REPLAY_COLUMNS = ("id, state, since, until, source, destinations, condition, first_id, last_id, after_id, events,"
                  " matched, counts, owner, created_at, updated_at")


def archived_filters(after_id: int, last_id: int, since: float, until: float, source: str | None,
                     mark: str) -> tuple[str, list]:
    """The WHERE clause of ``archived`` for either backend: the id range first, so the primary key finds
    the page; ``mark`` is the placeholder."""
    where = f"id > {mark} AND id <= {mark} AND archived AND received_at >= {mark} AND received_at < {mark}"
    params: list[object] = [after_id, last_id, since, until]
    if source is not None:
        where += f" AND source = {mark}"
        params.append(source)
    return where, params


def event_columns(event) -> tuple[str | None, str | None, str | None]:
    """(type, name, userId) of an event, kept beside its body so the console filters on indexed columns:
    the name is a track's event or a page's or screen's name."""
    if not isinstance(event, dict):
        return None, None, None
    values = []
    for value in (event.get("type"), event.get("event") or event.get("name"), event.get("userId")):
        values.append(str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None)
    return values[0], values[1], values[2]


def event_filters(query: EventQuery, mark: str, bounds: tuple[int | None, int | None] = (None, None),
                  events: str = "", deliveries: str | None = None) -> tuple[str, list]:
    """The WHERE clause of ``events`` for either backend; ``mark`` is its placeholder. ``bounds``: the event
    ids the time range may hold (``id_bounds``); ``events``: the events table's alias with its dot;
    ``deliveries``: the deliveries' alias when walking them (their event_id stands in for the event's id;
    the time is the event's own received_at, as a replay's deliveries are written long after it)."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    event_id = f"{deliveries}.event_id" if deliveries else f"{events}id"
    received = f"{events}received_at"
    lowest, highest = bounds
    ranges: list[tuple[str, float | None]] = [
        (f"{event_id} < {mark}", query.before_id), (f"{event_id} >= {mark}", lowest), (f"{event_id} < {mark}", highest),
        (f"{received} >= {mark}", query.since), (f"{received} < {mark}", query.until)]
    for condition, bound in ranges:
        if bound is not None:
            where.append(condition)
            params.append(bound)
    for column, value in (("message_id", query.message_id), ("user_id", query.user_id), ("type", query.type),
                          ("name", query.name)):
        if value:
            where.append(f"{events}{column} = {mark}")
            params.append(value)
    return " AND ".join(where), params


def delivery_walk(query: EventQuery, pairs: list[tuple[str, str]], bounds: tuple[int | None, int | None],
                  mark: str) -> tuple[str, list]:
    """The ids of the newest events (at most ``query.limit``) with a delivery in one of ``pairs``
    (destination, state) that match ``query``: each pair walks the index (destination, state, event_id)
    from the newest end, distinct events only (a replay gives an event a second delivery to a destination),
    and stops at the limit; the newest of all of them are kept, so none is missed. The event is joined
    for its own columns and its time."""
    join = " JOIN events e ON e.id = d.event_id" if (query.type or query.name or query.user_id or query.message_id
                                                     or query.since is not None or query.until is not None) else ""
    where, filters = event_filters(query, mark, bounds, "e.", "d")
    walks, params = [], []
    for position, (destination, state) in enumerate(pairs):
        walks.append(f"SELECT event_id FROM (SELECT DISTINCT d.event_id AS event_id FROM deliveries d{join} WHERE"
                     f" d.destination = {mark} AND d.state = {mark} AND {where} ORDER BY d.event_id DESC"
                     f" LIMIT {mark}) AS w{position}")
        params += [destination, state, *filters, query.limit]
    return (f"SELECT DISTINCT event_id FROM ({' UNION ALL '.join(walks)}) AS u ORDER BY event_id DESC LIMIT {mark}",
            [*params, query.limit])


def walk_pairs(query: EventQuery, known: list[str]) -> list[tuple[str, str]]:
    """The (destination, state) pairs a query by delivery walks: its destination or every ``known`` one,
    its state or every state."""
    destinations = [query.destination] if query.destination else known
    states = [query.state] if query.state else list(STATES)
    return [(d, s) for d in destinations for s in states]


# How far out of id order an event's received_at may be: each writer stamps its events before it waits for
# its turn to write, so one that waited lands after events stamped later. Time ranges are turned into id
# ranges this much wider, then filtered on the time itself.
OUT_OF_ORDER = 300.0


def id_bounds(query: EventQuery, first_from: Callable[[int], tuple[int, float] | None],
              last_id: int | None) -> tuple[int | None, int | None]:
    """(lowest id, id past the highest) of the events ``query.since`` and ``query.until`` may hold, found by
    bisecting ids (events are numbered as they come in, so received_at grows with the id but for
    ``OUT_OF_ORDER``); a few point reads, where a filter on received_at would walk every newer event.
    ``first_from(id)``: (id, received_at) of the first event at or after that id, None past the last."""
    if last_id is None or (query.since is None and query.until is None):
        return None, None

    def first_at(moment: float) -> int:
        low, high = 0, last_id + 1
        while low < high:
            middle = (low + high) // 2
            found = first_from(middle)
            if found is None or found[1] >= moment:
                high = middle
            else:
                low = found[0] + 1
        return low

    lowest = first_at(query.since - OUT_OF_ORDER) if query.since is not None else None
    highest = first_at(query.until + OUT_OF_ORDER) if query.until is not None else None
    return lowest, highest


def loads_json(value):
    """A JSON column's value: SQLite gives text, PostgreSQL the parsed value."""
    return jsoncodec.loads(value) if isinstance(value, (str, bytes)) else value
