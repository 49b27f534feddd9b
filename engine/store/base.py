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
    RETRYING,
    SKIPPED,
    STATES,
)
from .group import GroupCommit
from .violations import NewViolation, ViolationQuery, ViolationRecord
from .wake import Hear, Notifier, Silent

# PENDING and PRUNABLE as SQL lists written into the statements: the planners use the partial indexes
# on "state IN (...)" only when the states are literals, not bound parameters.
PENDING_SQL = "(" + ", ".join(f"'{state}'" for state in PENDING) + ")"
PRUNABLE_SQL = "(" + ", ".join(f"'{state}'" for state in PRUNABLE) + ")"


# delivery or event ids; a name of its own because Store.list shadows the builtin inside the class
Ids = list[int]

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


@dataclass
class Attempt:
    """One HTTP try for one delivery (a batch request records one per delivery in it)."""

    at: float
    status: int | None           # HTTP status, None when there was no answer
    error: str | None            # masked
    duration: float = 0.0
    step: str | None = None      # which step of a multi-step action


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
    before_id: int | None = None   # paging: only events older than this one
    limit: int = 50


EventRecords = list[EventRecord]             # names for the return types of the methods after Store.list
ViolationRecords = list[ViolationRecord]
Timeline = list[tuple[float, int, int]]      # (bucket start, succeeded, failed)

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

    @abstractmethod
    def events(self, query: EventQuery) -> EventRecords:
        """The latest events matching ``query``, newest first, each with its deliveries (no requests or
        attempts): at most ``query.limit``, found through indexes for messageId and userId."""

    @abstractmethod
    def reasons(self, state: str = SKIPPED, limit: int = 100) -> dict[str, dict[str, int]]:
        """{destination: {reason: n}} for deliveries in ``state``, the most frequent first; duplicates
        share the one reason ``DUPLICATE``."""

    @abstractmethod
    def timeline(self, since: float, bucket: float, destination: str | None = None) -> Timeline:
        """Attempts since ``since`` per ``bucket`` seconds, oldest first: (bucket start, succeeded, failed).
        Buckets without attempts are left out."""

    @abstractmethod
    def requeue(self, now: float, ids: Ids | None = None, destination: str | None = None,
                state: str = DEAD) -> int:
        """Put final deliveries (dead by default) back in the queue, due now, with a fresh horizon."""

    @abstractmethod
    def hurry(self, destination: str, now: float) -> int:
        """Make every retrying, unleased delivery of ``destination`` due now (the destination recovered from an
        outage: what waited on its own backoff goes out together, in full batches); returns how many."""

    @abstractmethod
    def prune(self, before: float, batch: int = 1000) -> int:
        """Delete delivered/dry_run/skipped/rejected deliveries finished before ``before`` (and events left
        without deliveries), ``batch`` rows per transaction; dead letters are kept. Returns rows deleted."""

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


def event_columns(event) -> tuple[str | None, str | None, str | None]:
    """(type, name, userId) of an event, kept beside its body so the console filters on indexed columns:
    the name is a track's event or a page's or screen's name."""
    if not isinstance(event, dict):
        return None, None, None
    values = []
    for value in (event.get("type"), event.get("event") or event.get("name"), event.get("userId")):
        values.append(str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None)
    return values[0], values[1], values[2]


def event_filters(query: EventQuery, mark: str) -> tuple[str, list]:
    """The WHERE clause of ``events`` for either backend; ``mark`` is its placeholder."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if query.before_id is not None:
        where.append(f"id < {mark}")
        params.append(query.before_id)
    for column, value in (("message_id", query.message_id), ("user_id", query.user_id), ("type", query.type),
                          ("name", query.name)):
        if value:
            where.append(f"{column} = {mark}")
            params.append(value)
    return " AND ".join(where), params
