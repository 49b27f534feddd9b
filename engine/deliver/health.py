"""A destination's health: what an operator must hear without asking (it started failing, it recovered,
an event went dead), and a circuit breaker, so an outage does not multiply traffic.

A destination is *failing* from its first answer worth a retry (5xx, 429, no answer) until it
accepts something again; one warning marks each edge, not one per attempt. A final 4xx is the
vendor refusing one event, not the destination failing: it shows up as that event's dead letter. A
request that could not be sent as built (a header HTTP cannot carry) is no answer of the vendor's at all:
the breaker never hears it (``local``).

While it is failing the destination backs off as a whole: no request before ``open_until``
(exponential backoff with jitter per consecutive failure, and never before the earliest retry the
vendor's answer set, which honours Retry-After), then one probe at a time. The probe's success
closes the breaker, and the worker makes every retrying delivery due at once, so they go out
together in full batches. Each event keeps its own retry horizon and dead letter as before.
"""
from __future__ import annotations

import logging
import threading

from ..answers import is_retryable
from ..states import DEAD, DELIVERED, DRY_RUN, RETRYING
from .retry import RetryPolicy

log = logging.getLogger("eventmap.deliver")


class Health:
    """One destination's failing/recovered edges and dead letters; shared by its threads."""

    def __init__(self, destination: str, clock, policy: RetryPolicy | None = None, rng=None):
        self.destination, self.clock = destination, clock
        self.policy = policy or RetryPolicy()
        self.rng = rng
        self.failing_since: float | None = None
        self.failures = 0
        self.open_until = 0.0     # while failing: no request before this
        self.probing = False      # while failing: a probe is out
        self._lock = threading.Lock()

    def gate(self, now: float) -> int | None:
        """How many deliveries a turn may take: None, as many as it likes (healthy); 1, a probe; 0, none now.
        A caller given 1 calls ``probe_done`` when its turn ends."""
        with self._lock:
            if self.failing_since is None:
                return None
            if self.probing or now < self.open_until:
                return 0
            self.probing = True
            return 1

    def probe_done(self) -> None:
        with self._lock:
            self.probing = False

    def not_before(self) -> float:
        """When the breaker lets the next request out (0: now); the runner sleeps until then."""
        with self._lock:
            return self.open_until if self.failing_since is not None else 0.0

    def observe(self, finishes: list, message_ids: dict, local: set | frozenset = frozenset()) -> bool:
        """Verdicts just recorded; ``message_ids`` maps delivery id to messageId for the dead-letter lines,
        ``local`` holds the delivery ids that failed here, not at the vendor. True when the destination has
        just recovered."""
        for finish in finishes:
            if finish.state == DEAD:
                last = finish.attempt.error if finish.attempt is not None else None
                log.warning("%s: dead letter %s (messageId %s): %s%s", self.destination, finish.id,
                            message_ids.get(finish.id), finish.reason, f" (last answer: {last})" if last else "",
                            extra={"event": "dead_letter", "destination": self.destination, "delivery": finish.id,
                                   "messageId": message_ids.get(finish.id), "reason": finish.reason})
        failed = [f for f in finishes if f.id not in local and _failed_for_the_destination(f)]
        succeeded = any(f.state in (DELIVERED, DRY_RUN) for f in finishes)
        recovered = False
        with self._lock:
            if succeeded and self.failing_since is not None:
                recovered = True
                seconds = self.clock() - self.failing_since
                log.warning("%s recovered: it accepts deliveries again, after %d failed requests over %.1fs",
                            self.destination, self.failures, seconds,
                            extra={"event": "recovered", "destination": self.destination,
                                   "failed_requests": self.failures, "seconds": round(seconds, 1)})
                self.failing_since, self.failures, self.open_until = None, 0, 0.0
            if failed and not succeeded:
                if self.failing_since is None:
                    self.failing_since = self.clock()
                    error = failed[0].attempt.error
                    log.warning("%s is failing: %s (deliveries are retried; a line follows when it recovers)",
                                self.destination, error,
                                extra={"event": "failing", "destination": self.destination, "error": error})
                self.failures += 1
                now = self.clock()
                asked = [f.next_at for f in failed if f.next_at is not None]  # Retry-After, where the vendor gave one
                self.open_until = max(now + self.policy.wait(self.failures, None, self.rng), min(asked, default=now))
        return recovered


def _failed_for_the_destination(finish) -> bool:
    attempt = finish.attempt
    if attempt is None or attempt.error is None:
        return False
    return finish.state in (RETRYING, DEAD) and (attempt.status is None or is_retryable(attempt.status))
