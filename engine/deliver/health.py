"""What an operator must hear about a destination without asking: it started failing, it recovered,
an event went dead.

A destination is *failing* from its first answer worth a retry (5xx, 429, no answer) until it
accepts something again; one warning marks each edge, not one per attempt. A final 4xx is the
vendor refusing one event, not the destination failing: it shows up as that event's dead letter.
"""
from __future__ import annotations

import logging
import threading

from ..states import DEAD, DELIVERED, DRY_RUN, RETRYING
from .http import is_retryable

log = logging.getLogger("eventmap.deliver")


class Health:
    """One destination's failing/recovered edges and dead letters; shared by its threads."""

    def __init__(self, destination: str, clock):
        self.destination, self.clock = destination, clock
        self.failing_since: float | None = None
        self.failures = 0
        self._lock = threading.Lock()

    def observe(self, finishes: list, message_ids: dict) -> None:
        """Verdicts just recorded; ``message_ids`` maps delivery id to messageId for the dead-letter lines."""
        for finish in finishes:
            if finish.state == DEAD:
                last = finish.attempt.error if finish.attempt is not None else None
                log.warning("%s: dead letter %s (messageId %s): %s%s", self.destination, finish.id,
                            message_ids.get(finish.id), finish.reason, f" (last answer: {last})" if last else "",
                            extra={"event": "dead_letter", "destination": self.destination, "delivery": finish.id,
                                   "messageId": message_ids.get(finish.id), "reason": finish.reason})
        failed = [f for f in finishes if _failed_for_the_destination(f)]
        succeeded = any(f.state in (DELIVERED, DRY_RUN) for f in finishes)
        with self._lock:
            if succeeded and self.failing_since is not None:
                seconds = self.clock() - self.failing_since
                log.warning("%s recovered: it accepts deliveries again, after %d failed requests over %.1fs",
                            self.destination, self.failures, seconds,
                            extra={"event": "recovered", "destination": self.destination,
                                   "failed_requests": self.failures, "seconds": round(seconds, 1)})
                self.failing_since, self.failures = None, 0
            if failed and not succeeded:
                if self.failing_since is None:
                    self.failing_since = self.clock()
                    error = failed[0].attempt.error
                    log.warning("%s is failing: %s (deliveries are retried; a line follows when it recovers)",
                                self.destination, error,
                                extra={"event": "failing", "destination": self.destination, "error": error})
                self.failures += 1


def _failed_for_the_destination(finish) -> bool:
    attempt = finish.attempt
    if attempt is None or attempt.error is None:
        return False
    return finish.state in (RETRYING, DEAD) and (attempt.status is None or is_retryable(attempt.status))
