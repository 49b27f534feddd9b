"""Webhook payloads waiting under ``source:NAME`` become Segment events, after the vendor got its 200.

The server stores each payload with one queued delivery to the pseudo-destination
``source:NAME``. This worker leases them one at a time, runs the source's lookups
and mapping, hands the events to intake (their message ids are uuid5s of the
webhook delivery id, so a retry after a crash is de-duplicated there), and ends
the pseudo-delivery as delivered, skipped (with the reason), rejected (with the
errors), retrying (a lookup failed and may work later) or dead (it will not).
A delivery runner calls ``run_once(now)`` alongside the destination workers.

One payload never holds up the others: whatever its processing raises (a
lookup's condition, a fault of ours) is its own verdict, rejected with the
reason, and the worker goes on with the next.
"""
from __future__ import annotations

import os
import random
import socket
import time

from ..failures import event_failed
from ..intake import Intake
from ..load.delivery_options import DeliveryOptions
from ..secrets import Masker
from ..source import EVENTS, FAILED, BoundSource
from ..source import REJECTED as SOURCE_REJECTED
from ..source import SKIPPED as SOURCE_SKIPPED
from ..store import DEAD, DELIVERED, REJECTED, RETRYING, SKIPPED, Attempt, Finish, Leased, Store

DEFAULT_OPTIONS = DeliveryOptions()   # frozen: one shared default is safe

class SourceWorker:
    def __init__(self, name: str, source: BoundSource, intake: Intake, store: Store, client,
                 options: DeliveryOptions = DEFAULT_OPTIONS, batch: int = 20, owner: str | None = None,
                 clock=time.time, jitter=random.random):
        self.name = name                       # the pseudo-destination, "source:gladly"
        self.source, self.intake, self.store, self.client = source, intake, store, client
        self.options, self.batch, self.clock, self.jitter = options, batch, clock, jitter
        self.owner = owner or f"{name}@{socket.gethostname()}:{os.getpid()}"

    def __repr__(self) -> str:
        return f"<SourceWorker {self.name}>"

    def run_once(self, now: float) -> int:
        """Process up to ``batch`` due payloads, one lease each (lookups may be slow); returns how many.

        ``now`` moves on by the time the lookups take, so a later lease is not already expired."""
        done, started = 0, self.clock()
        while done < self.batch:
            at = now + (self.clock() - started)
            leased = self.store.lease(self.name, 1, self.owner, at, self.options.lease)
            if not leased:
                break
            finish = self.verdict(leased[0], at)
            self.store.finish([finish], self.owner, now + (self.clock() - started))
            done += 1
        return done

    def verdict(self, item: Leased, now: float) -> Finish:
        try:
            result = self.source.process(item.event, self.client)
        except Exception as exc:  # noqa: BLE001  the per-payload boundary: its own verdict, the rest go on
            return self._failed(item, exc, now)
        if result.status == EVENTS:
            receipts = self.intake.accept(result.events, source=self.name.removeprefix("source:"))
            names = ", ".join(f"{e.get('event') or e.get('type')} (messageId {r.message_id})"
                              for e, r in zip(result.events, receipts))
            refused = sum(r.rejected for r in receipts)
            reason = f"mapped into {names}" + (f"; {refused} rejected at intake" if refused else "")
            return Finish(item.id, DELIVERED, Attempt(now, None, None), reason=reason)
        if result.status == SOURCE_SKIPPED:
            return Finish(item.id, SKIPPED, Attempt(now, None, None), reason=result.reason)
        if result.status == SOURCE_REJECTED:
            return Finish(item.id, REJECTED, Attempt(now, None, None), reason=result.reason or
                          "the webhook payload cannot be mapped", errors=[e.as_dict() for e in result.errors])
        assert result.status == FAILED, result.status
        attempt = Attempt(now, None, result.reason)
        if not result.retryable:
            return Finish(item.id, DEAD, attempt, reason=f"{result.reason} (not retried: trying again cannot help)")
        return self._retry(item, attempt, result.reason or "a lookup failed")

    def _failed(self, item: Leased, exc: Exception, now: float) -> Finish:
        """The verdict of a payload whose processing raised (a lookup's condition, a fault of ours): rejected,
        with the reason."""
        failed = event_failed(exc, f"the source {self.source.source.name}", Masker(self.source.secrets))
        return Finish(item.id, REJECTED, Attempt(now, None, None), reason=failed.reason,
                      errors=[failed.problem.as_dict()])

    def _retry(self, item: Leased, attempt: Attempt, reason: str) -> Finish:
        wait = self.wait(item.attempts)
        if attempt.at + wait - item.first_at > self.options.retry_for:
            return Finish(item.id, DEAD, attempt, reason=f"{reason} (gave up after {item.attempts + 1} attempts)")
        return Finish(item.id, RETRYING, attempt, next_at=attempt.at + wait, reason=reason)

    def wait(self, attempts: int) -> float:
        """Doubling backoff with jitter, capped: many failed payloads do not all retry at one instant."""
        base = min(self.options.max_backoff, self.options.backoff * 2 ** attempts)
        return base * (0.5 + self.jitter() / 2)

