"""Accepting events: validate, route, and write them durably before anyone is told "ok".

Every event ends in the store with one delivery per configured destination:
queued, or skipped with the reason, or the whole event rejected with every
schema error (kept under the destination name ``(intake)`` for inspection).
The server, ``eventmap enqueue`` and the source worker all come through here,
so all of them refuse what the store cannot hold (see ``validate.storable``)
the same way, one event at a time.

``decide`` is the per-event failure boundary of intake: whatever fails for one
event (a route's condition, a fault of ours) is that event's own verdict, with
the reason, and never fails the batch, request or inbox turn it came in. A
route's condition that cannot be evaluated rejects the event at that
destination only; anything else rejects the event under ``(intake)``. What
the store cannot hold is refused here, before writing, so a write that fails
is the store failing, and the whole request is retried. An event from a source with a tracking plan
is checked against it after the Segment spec (``validate.plan``).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from .failures import EventFailed, event_failed
from .problems import Problem
from .route import Route
from .store import INTAKE, QUEUED, REJECTED, SKIPPED, Accepted, NewDelivery, NewEvent, NewViolation, Store
from .validate import storable

UNSTORABLE = "the event holds values that cannot be stored (kept with them replaced)"
PLAN_FAILED = "the tracking plan check failed on this event"
log = logging.getLogger("eventmap.intake")


@dataclass
class Receipt:
    """What happened to one event at intake, for the caller to report."""

    message_id: str | None
    accepted: Accepted
    errors: list      # schema errors (Problem) when the event was rejected
    violations: list = field(default_factory=list)   # NewViolations of its source's tracking plan

    @property
    def rejected(self) -> bool:
        return bool(self.errors)

    def states(self) -> dict[str, str]:
        return {destination: state for _, destination, state in self.accepted.deliveries}


class Intake:
    def __init__(self, engine, routes: list[Route], store: Store, dedupe_window: float = 86400.0,
                 fill_message_id: bool = True, clock=time.time, plans: dict | None = None):
        self.engine, self.routes, self.store = engine, routes, store
        self.dedupe_window, self.fill_message_id, self.clock = dedupe_window, fill_message_id, clock
        self.plans = plans or {}   # source name -> its SourcePlan (validate/plan.py)

    def decide(self, event, source: str | None = None) -> tuple[NewEvent, list]:
        """The deliveries one event needs, without writing anything; never raises for one event.
        ``source``: the source it came in from, whose tracking plan (if it has one) applies; an accepted
        event is archived under it, for replays."""
        try:
            return self._decide(event, source)
        except Exception as exc:  # noqa: BLE001  the per-event boundary: this event alone is rejected
            failed = event_failed(exc, "intake")
            return self.reject(event, failed.reason, [failed.problem])

    def _decide(self, event, source: str | None) -> tuple[NewEvent, list]:
        if self.fill_message_id and isinstance(event, dict) and not event.get("messageId"):
            event = {**event, "messageId": f"eventmap-{uuid.uuid4()}"}
        errors = storable.problems(event)
        if errors:
            return self.reject(event, UNSTORABLE, [])
        errors, _ = self.engine.validate(event)
        if errors:
            return self.reject(event, "the event does not follow the Segment spec", errors)
        violations: list[NewViolation] = []
        plan = self.plans.get(source) if source is not None else None
        if plan is not None and source is not None:
            try:
                verdict = plan.check(event)
            except Exception as exc:   # one event the check cannot take is rejected alone (and logged)
                log.exception("source %s: the tracking plan check failed on one event (rejected)", source)
                return self.reject(event, PLAN_FAILED, [Problem("", f"{PLAN_FAILED}: {type(exc).__name__}")])
            if verdict is not None:
                message_id = _message_id(event)
                violations = [NewViolation(source, b.event, b.rule, b.path, b.message, b.action, event, message_id)
                              for b in verdict.breaches]
                if verdict.blocked:
                    rejected, problems = self.reject(event, verdict.reason, verdict.problems())
                    rejected.violations = violations
                    return rejected, problems
                event = verdict.event
        deliveries = []
        for route in self.routes:
            if not route.enabled:
                continue  # a destination switched off in the configuration gets no rows at all
            name = route.destination.slug
            try:
                reason = route.skip_reason(event)
            except EventFailed as exc:   # this destination cannot decide on the event; the others can
                deliveries.append(NewDelivery(name, REJECTED, exc.reason, [exc.problem.as_dict()]))
                continue
            deliveries.append(NewDelivery(name, SKIPPED, reason) if reason else NewDelivery(name, QUEUED))
        return NewEvent(event, _message_id(event), deliveries, violations, source, archive=True), []

    def reject(self, event, reason: str, errors: list) -> tuple[NewEvent, list]:
        """An event refused before routing (bad schema, too large): kept under ``(intake)`` with its errors.

        What the store cannot hold is replaced in the copy kept, and named in the errors."""
        unstorable = storable.problems(event)
        if unstorable:
            event, errors = storable.safe_copy(event), [*unstorable, *errors]
        rejection = NewDelivery(INTAKE, REJECTED, reason, [e.as_dict() for e in errors])
        return NewEvent(event, _message_id(event), [rejection]), errors

    def accept(self, events: list, source: str | None = None) -> list[Receipt]:
        """Write a batch of events (from ``source``) in one transaction; each Receipt says where its event went."""
        return self.accept_decided([self.decide(event, source) for event in events])

    def accept_decided(self, decided: list[tuple[NewEvent, list]]) -> list[Receipt]:
        """Write what ``decide`` or ``reject`` returned, in one transaction, for callers that refuse
        some events themselves (the server's size limits) but must keep them with the rest."""
        accepted = self.store.accept([new for new, _ in decided], self.clock(), self.dedupe_window)
        return [Receipt(new.message_id, done, errors, new.violations) for (new, errors), done in zip(decided, accepted)]


def _message_id(event) -> str | None:
    message_id = event.get("messageId") if isinstance(event, dict) else None
    return message_id if isinstance(message_id, str) else None
