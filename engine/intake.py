"""Accepting events: validate, route, and write them durably before anyone is told "ok".

Every event ends in the store with one delivery per configured destination:
queued, or skipped with the reason, or the whole event rejected with every
schema error (kept under the destination name ``(intake)`` for inspection).
The server and ``eventmap enqueue`` both come through here.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from .route import Route
from .store import INTAKE, QUEUED, REJECTED, SKIPPED, Accepted, NewDelivery, NewEvent, Store


@dataclass
class Receipt:
    """What happened to one event at intake, for the caller to report."""

    message_id: str | None
    accepted: Accepted
    errors: list      # schema errors (Problem) when the event was rejected

    @property
    def rejected(self) -> bool:
        return bool(self.errors)

    def states(self) -> dict[str, str]:
        return {destination: state for _, destination, state in self.accepted.deliveries}


class Intake:
    def __init__(self, engine, routes: list[Route], store: Store, dedupe_window: float = 86400.0,
                 fill_message_id: bool = True, clock=time.time):
        self.engine, self.routes, self.store = engine, routes, store
        self.dedupe_window, self.fill_message_id, self.clock = dedupe_window, fill_message_id, clock

    def decide(self, event) -> tuple[NewEvent, list]:
        """The deliveries one event needs, without writing anything."""
        if self.fill_message_id and isinstance(event, dict) and not event.get("messageId"):
            event = {**event, "messageId": f"eventmap-{uuid.uuid4()}"}
        errors, _ = self.engine.validate(event)
        message_id = event.get("messageId") if isinstance(event, dict) else None
        if not isinstance(message_id, str):
            message_id = None
        if errors:
            rejection = NewDelivery(INTAKE, REJECTED, "the event does not follow the Segment spec",
                                    [e.as_dict() for e in errors])
            return NewEvent(event, message_id, [rejection]), errors
        deliveries = []
        for route in self.routes:
            if not route.enabled:
                continue  # a destination switched off in the configuration gets no rows at all
            reason = route.skip_reason(event)
            name = route.destination.slug
            deliveries.append(NewDelivery(name, SKIPPED, reason) if reason else NewDelivery(name, QUEUED))
        return NewEvent(event, message_id, deliveries), []

    def accept(self, events: list) -> list[Receipt]:
        """Write a batch of events in one transaction; each Receipt says where its event went."""
        decided = [self.decide(event) for event in events]
        accepted = self.store.accept([new for new, _ in decided], self.clock(), self.dedupe_window)
        return [Receipt(new.message_id, done, errors) for (new, errors), done in zip(decided, accepted)]
