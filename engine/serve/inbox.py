"""The inbox processor: requests kept whole at intake (``server.intake: queue``) become events and deliveries.

Like RudderStack's gateway and processor: the collector only makes each request
durable and answers, and this worker does the rest moments later, off the
request path: Segment's fields, validation, routing, dedupe and the delivery
rows, with the same code the collector runs in ``validate`` mode
(``calls.decide_request``). It leases a few requests at a time and writes their
events and removes them from the inbox in one transaction, so each request
becomes its events exactly once, even when a processor is killed between the
two (the lease runs out and another takes the request again).

One bad request or event never stops the others: each event is decided on its
own (``Intake.decide``, the per-event boundary), and a request that cannot be
read at all is kept as one rejection; the turn, its other requests and its
lease go on. Only the store failing fails a turn (it is taken again after the
lease, nothing lost).

A delivery runner calls ``run_once(now)`` alongside the destination workers; it
runs in the server's background process and in ``eventmap deliver``, wherever
the configuration says ``intake: queue`` or the inbox holds requests.
"""
from __future__ import annotations

import logging
import os
import socket
import time

from ..failures import event_failed
from ..intake import Intake
from ..problems import Problem
from ..store import INBOX, NewEvent, Received, Store
from .calls import decide_request
from .segment_api import ApiError, parse_json

log = logging.getLogger("eventmap.serve")

NAME = INBOX   # not a destination: the name the runner, its logs and the store's wake-ups know this worker by


class InboxWorker:
    name = NAME

    def __init__(self, intake: Intake, store: Store, *, requests_per_turn: int = 50, events_per_write: int = 500,
                 lease_for: float = 60.0, owner: str | None = None, clock=time.time):
        """A turn leases up to ``requests_per_turn`` requests and writes their events in transactions of about
        ``events_per_write``, so SQLite's write lock is never held long away from intake (500 events: some
        tens of milliseconds), whether the requests are batches of 100 or single calls."""
        self.intake, self.store, self.clock = intake, store, clock
        self.requests_per_turn, self.events_per_write, self.lease_for = requests_per_turn, events_per_write, lease_for
        self.owner = owner or f"{NAME}@{socket.gethostname()}:{os.getpid()}"
        self.events = 0   # events made so far, for the progress line

    def __repr__(self) -> str:
        return f"<InboxWorker {self.owner}>"

    def run_once(self, now: float | None = None) -> int:
        """Turn up to ``requests_per_turn`` waiting requests into events; returns how many requests."""
        now = self.clock() if now is None else now
        taken = self.store.take_received(self.requests_per_turn, self.owner, now, self.lease_for)
        ids: list[int] = []
        decided: list[tuple[NewEvent, list]] = []
        for position, request in enumerate(taken):
            ids.append(request.id)
            decided += self.decide(request)
            if len(decided) >= self.events_per_write or position == len(taken) - 1:
                if not self._write(ids, decided):
                    break
                ids, decided = [], []
        return len(taken)

    def _write(self, ids: list[int], decided: list[tuple[NewEvent, list]]) -> bool:
        """The events of requests ``ids``, and the requests gone, in one transaction; False: the lease was lost."""
        written = self.store.accept_received(ids, self.owner, [new for new, _ in decided], self.clock(),
                                             self.intake.dedupe_window)
        if written is None:
            log.warning("%s: the lease on %d inbox requests ran out before they were written; another processor "
                        "has them", NAME, len(ids))
            return False
        self.events += len(decided)
        return True

    def progress(self) -> str:
        """This worker's part of the progress line."""
        return f"{NAME}: {self.events} events made, {self.store.waiting_requests()} requests waiting"

    def decide(self, request: Received) -> list[tuple[NewEvent, list]]:
        """The events of one stored request, decided as the collector would have at ``received_at``."""
        try:
            body = parse_json(request.body)
            return decide_request(self.intake, request.call, body, request.received_at, request.ip, request.source)
        except ApiError as exc:   # intake checked the body before storing it: only a damaged row gets here
            return [self._unreadable(request, "the stored request cannot be read", Problem("", exc.message))]
        except Exception as exc:  # noqa: BLE001  the per-request boundary: this request alone is rejected
            failed = event_failed(exc, "the inbox processor")
            return [self._unreadable(request, failed.reason, failed.problem)]

    def _unreadable(self, request: Received, reason: str, problem: Problem) -> tuple[NewEvent, list]:
        """A request none of whose events can be made: kept whole as one rejection, for a person to read."""
        text = request.body.decode("utf-8", "replace")
        return self.intake.reject({"inbox_request": request.id, "body": text}, reason, [problem])


def inbox_workers(intake: Intake, store: Store, mode: str | None, *, lease_for: float, owner: str) -> list:
    """The inbox processor for a runner, where one is needed: ``server.intake`` (``mode``) is queue, or
    requests wait in the inbox from when it was; else none."""
    if mode != "queue" and not store.waiting_requests():
        return []
    return [InboxWorker(intake, store, lease_for=lease_for, owner=owner)]
