"""Replay: archived events sent again through today's mappings and routes (issue 27).

The archive is the store's ``events`` table: every accepted Segment event is
written there once, with its deliveries, in intake's transaction, and stays
while it has deliveries or is younger than ``delivery.archive_for``. A replay
reads the archived events of a time range by key (id order, ``CHUNK`` at a
time: constant memory however long the range), decides each as intake would
today (``Intake.decide``: the Segment schema, today's tracking plan of the
source it came in from, and today's routes) and renders what intake made of it
with today's mapping, as a worker will, so its summary says what will happen. An
event today's plan changes (properties dropped) is sent as that copy, written as
an event of its own (``ReplayStep.copies``); the archive keeps it as accepted.
Each chunk's new deliveries and the replay's progress are written in one
transaction (``Store.replay_step``): a replay killed at any moment and resumed
goes on after the last chunk written, and enqueues no event twice.

The deliveries are new (fresh ids) and bypass the dedupe window on purpose: the
destinations had these messageIds already, and a replay exists to send them again.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import jmespath
from jmespath.exceptions import JMESPathError

from .failures import event_failed
from .intake import Intake
from .map.language import is_truthy
from .outcome import Outcome
from .problems import ConfigError, EventmapError, Problem
from .route import Route
from .states import (
    QUEUED,
    REJECTED,
    REPLAY_ABANDONED,
    REPLAY_DONE,
    REPLAY_FINAL,
    REPLAY_STOPPED,
    REPLAYED,
    SEND,
    SKIPPED,
)
from .store import Archived, NewDelivery, Replay, ReplayStep, Store

log = logging.getLogger("eventmap.replay")

CHUNK = 500            # archived events per page read and per transaction written
REASONS_KEPT = 20      # distinct skip and rejection reasons counted per destination; the rest as OTHER_REASONS
OTHER_REASONS = "(other reasons)"
WHERE_FAILED = "--where failed for this event"


@dataclass(frozen=True)
class Selection:
    """Which archived events a replay sends again, and to which destinations."""

    since: float
    until: float
    source: str | None = None
    destinations: tuple[str, ...] | None = None   # None: every enabled destination
    where: str | None = None                      # a JMESPath condition on the event

    @classmethod
    def of(cls, replay: Replay) -> Selection:
        return cls(replay.since, replay.until, replay.source,
                   tuple(replay.destinations) if replay.destinations is not None else None, replay.where)

    def overlaps(self, other: Selection) -> bool:
        """Same filters and overlapping ranges: the two would send some events twice."""
        return (self.source, self.destinations, self.where) == (other.source, other.destinations, other.where) \
            and self.since < other.until and other.since < self.until


@dataclass
class Verdict:
    """What the replay does with one event at one destination."""

    destination: str
    status: str                      # REPLAYED, SKIPPED or REJECTED
    reason: str | None = None
    errors: list = field(default_factory=list)
    outcome: Outcome | None = None   # what would be sent (REPLAYED)

    def delivery(self) -> NewDelivery | None:
        """The row a replay writes: a queued delivery, or a rejected one with its errors; nothing for a skip
        (counted, with its reason, in the replay's record)."""
        if self.status == REPLAYED:
            return NewDelivery(self.destination)
        if self.status == REJECTED:
            return NewDelivery(self.destination, REJECTED, self.reason, self.errors)
        return None


@dataclass
class Decided:
    """One archived event's verdicts, and the event its deliveries send when today's tracking plan changed it
    (``copy``: properties dropped; kept as an event of its own beside the archived one)."""

    verdicts: list[Verdict]
    copy: object = None


class ReplayTaken(EventmapError):
    """Another process has taken over this replay (``eventmap replay --resume`` elsewhere): this one stops."""


def compile_where(where: str | None):
    """The compiled ``--where`` condition; a ConfigError naming it when it is not JMESPath."""
    if not where:
        return None
    try:
        return jmespath.compile(where)
    except JMESPathError as exc:
        detail = str(exc).splitlines()[0].rstrip(":")
        column = getattr(exc, "lex_position", None)
        where_in = f" (column {column})" if isinstance(column, int) else ""
        raise ConfigError([Problem("--where", f"{where!r} is not a valid JMESPath expression: {detail}{where_in}")]) \
            from None


def selected_routes(routes: list[Route], destinations: tuple[str, ...] | None) -> list[Route]:
    """Today's enabled routes, or the ones named (by file or display name); a ConfigError for a name that
    is not an enabled destination of the configuration."""
    enabled = [route for route in routes if route.enabled]
    if destinations is None:
        return enabled
    chosen, problems = [], []
    for name in destinations:
        found = [r for r in routes if name.lower() in (r.destination.slug.lower(), r.destination.name.lower())]
        if not found:
            known = ", ".join(r.destination.slug for r in enabled) or "none"
            problems.append(Problem("--destination", f"{name!r} is not a destination of the configuration "
                                                     f"(configured and enabled: {known})"))
        elif not found[0].enabled:
            problems.append(Problem("--destination", f"{name!r} is disabled in the configuration: nothing would be "
                                                     "sent to it"))
        elif found[0] not in chosen:
            chosen.append(found[0])
    if problems:
        raise ConfigError(problems)
    return chosen


class Replayer:
    """Runs one selection of archived events through today's routes and mappings."""

    def __init__(self, engine, routes: list[Route], store: Store, selection: Selection, *, chunk: int = CHUNK,
                 clock=time.time, plans: dict | None = None):
        """``plans``: today's tracking plans by source name (``Config.plans``), applied to each event under the
        source it came in from, as intake would apply them now."""
        self.store, self.chunk, self.clock = store, chunk, clock
        self.routes = selected_routes(routes, selection.destinations)
        if selection.destinations is not None:   # by file name, however given: the same replay compares equal
            selection = replace(selection, destinations=tuple(route.destination.slug for route in self.routes))
        self.selection = selection
        self._where = compile_where(selection.where)
        # intake's own decision (schema, plan, routes) with today's configuration; nothing is written through it.
        # Its decide is intake's per-event boundary: a route whose condition fails on an event rejects it at that
        # destination only, anything else rejects the event (under INTAKE), and it never raises.
        self.intake = Intake(engine, self.routes, store, dedupe_window=0.0, fill_message_id=False, plans=plans)

    def __repr__(self) -> str:
        return f"<Replayer {self.selection}>"

    # --- one event
    def decide(self, item: Archived) -> Decided | None:
        """A verdict per destination for one archived event; None when ``--where`` leaves it out. Whatever
        fails for this event (the condition, the mapping) is its own verdict, with the reason."""
        names = [route.destination.slug for route in self.routes]
        if self._where is not None:
            try:
                if not is_truthy(self._where.search(item.event)):
                    return None
            except Exception as exc:  # noqa: BLE001  a condition that fails on one event skips that event only
                reason = f"{WHERE_FAILED}: {_first_line(exc)}"
                return Decided([Verdict(name, SKIPPED, reason) for name in names])
        new, _ = self.intake.decide(item.event, item.source)
        if not new.archive:   # refused today (the Segment schema, the source's plan): at every destination
            rejection = new.deliveries[0]
            return Decided([Verdict(name, REJECTED, rejection.reason, rejection.errors or []) for name in names])
        decided = {d.destination: d for d in new.deliveries}
        # what intake makes of it today is what is rendered and sent: less what today's plan drops
        copy = new.event if new.event is not item.event and new.event != item.event else None
        sent = item.event if copy is None else copy
        return Decided([self._render(route, decided[route.destination.slug], sent) for route in self.routes], copy)

    def _render(self, route: Route, decided: NewDelivery, event) -> Verdict:
        """The verdict at one destination: intake's, or else what today's mapping makes of ``event``, which
        is what the new delivery sends."""
        name = route.destination.slug
        if decided.state == REJECTED:   # the route's condition cannot be evaluated on this event
            return Verdict(name, REJECTED, decided.reason, decided.errors or [])
        if decided.state != QUEUED:
            return Verdict(name, SKIPPED, decided.reason)
        try:
            outcome = route.destination.render(event, route.settings, route.secrets)
        except Exception as exc:  # noqa: BLE001  the per-event boundary, as the delivery worker's
            failed = event_failed(exc, "the mapping")
            return Verdict(name, REJECTED, failed.reason, [failed.problem.as_dict()])
        if outcome.status == SEND:
            return Verdict(name, REPLAYED, outcome=outcome)
        if outcome.status == REJECTED:
            return Verdict(name, REJECTED, outcome.reason, [e.as_dict() for e in outcome.errors])
        return Verdict(name, SKIPPED, outcome.reason)

    # --- the whole selection
    def bounds(self) -> tuple[int, int] | None:
        """The ids of the first and last archived events of the range (fixed when a replay begins)."""
        return self.store.archive_bounds(self.selection.since, self.selection.until)

    def pages(self, after_id: int, last_id: int):
        """The archived events of the selection after ``after_id``, a page at a time (read by key)."""
        selection = self.selection
        while True:
            page = self.store.archived(after_id, last_id, selection.since, selection.until, selection.source,
                                       self.chunk)
            if page:
                yield page
                after_id = page[-1].id
            if len(page) < self.chunk:
                return

    def run(self, replay: Replay, on_step: Callable[[Replay], None] | None = None) -> Replay:
        """Replay what is left of ``replay`` (its owner must be this process), a chunk per transaction; returns
        it done. Raises ReplayTaken when another process took it over (nothing of the refused chunk is written)."""
        owner = str(replay.owner)
        for page in self.pages(replay.after_id, replay.last_id):
            counts = {name: dict(per, reasons=dict(per.get("reasons", {}))) for name, per in replay.counts.items()}
            events, matched, rows, copies = replay.events, replay.matched, [], {}
            for item in page:
                events += 1
                decided = self.decide(item)
                if decided is None:
                    continue
                matched += 1
                for verdict in decided.verdicts:
                    tally(counts, verdict)
                    delivery = verdict.delivery()
                    if delivery is not None:
                        rows.append((item.id, item.message_id, delivery))
                        if decided.copy is not None:
                            copies[item.id] = decided.copy
            step = ReplayStep(page[-1].id, events, matched, counts, rows, copies)
            now = self.clock()
            if not self.store.replay_step(replay.id, owner, replay.after_id, step, now):
                raise ReplayTaken(f"replay {replay.id} was taken over by another process (or abandoned): "
                                  f"this one stops; 'eventmap replay --list' shows who runs it")
            replay.after_id, replay.events, replay.matched, replay.counts = page[-1].id, events, matched, counts
            replay.updated_at = now
            if on_step is not None:
                on_step(replay)
        if not self.store.end_replay(replay.id, owner, REPLAY_DONE, self.clock()):
            raise ReplayTaken(f"replay {replay.id} was taken over by another process (or abandoned) as it ended")
        replay.state = REPLAY_DONE
        return replay

    def dry_run(self, replay: Replay, on_verdict: Callable[[Archived, Verdict], None],
                on_step: Callable[[Replay], None] | None = None) -> Replay:
        """Decide every event of ``replay`` (unsaved: ``new``) and hand each verdict to ``on_verdict``; nothing
        is written. Returns it with the totals."""
        for page in self.pages(replay.after_id, replay.last_id):
            for item in page:
                replay.events += 1
                decided = self.decide(item)
                if decided is None:
                    continue
                replay.matched += 1
                for verdict in decided.verdicts:
                    tally(replay.counts, verdict)
                    on_verdict(item, verdict)
            replay.after_id = page[-1].id
            if on_step is not None:
                on_step(replay)
        replay.state = REPLAY_DONE
        return replay

    def new(self, bounds: tuple[int, int] | None, owner: str | None) -> Replay:
        """A replay of this selection over the archived ids ``bounds`` (None: there are none), nothing done
        yet (not saved)."""
        bounds = bounds or (1, 0)
        selection = self.selection
        return Replay(0, "", selection.since, selection.until, selection.source,
                      list(selection.destinations) if selection.destinations is not None else None,
                      selection.where, bounds[0], bounds[1], bounds[0] - 1,
                      counts={route.destination.slug: empty_counts() for route in self.routes}, owner=owner)


def empty_counts() -> dict:
    return {REPLAYED: 0, SKIPPED: 0, REJECTED: 0, "reasons": {}}


def tally(counts: dict, verdict: Verdict) -> None:
    """Count one verdict, and its reason for a skip or a rejection (at most REASONS_KEPT distinct ones per
    destination: a reason may name the event, and the record must stay small however long the replay)."""
    per = counts.setdefault(verdict.destination, empty_counts())
    per[verdict.status] = per.get(verdict.status, 0) + 1
    if verdict.status == REPLAYED:
        return
    reasons = per.setdefault("reasons", {})
    reason = verdict.reason or verdict.status
    if reason not in reasons and len(reasons) >= REASONS_KEPT:
        reason = OTHER_REASONS
    reasons[reason] = reasons.get(reason, 0) + 1


def unfinished(store: Store, selection: Selection, limit: int = 1000) -> list[Replay]:
    """Recorded replays not done or abandoned whose filters are the selection's and whose ranges overlap it."""
    return [replay for replay in store.replays(limit=limit)
            if replay.state not in REPLAY_FINAL and Selection.of(replay).overlaps(selection)]


def abandon(store: Store, replay_id: int, now: float) -> bool:
    """Mark an unfinished replay abandoned (never resumed; it no longer holds its range against others)."""
    return store.end_replay(replay_id, None, REPLAY_ABANDONED, now)


def stop(store: Store, replay: Replay, now: float) -> bool:
    """Mark a replay this process runs as stopped (Ctrl-C): resumable with ``eventmap replay --resume``."""
    return store.end_replay(replay.id, replay.owner, REPLAY_STOPPED, now)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
