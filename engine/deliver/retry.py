"""When to try again: randomized exponential backoff, the vendor's Retry-After, and a horizon."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    retry_for: float = 4 * 3600.0   # Segment gives up after four hours
    backoff: float = 1.0            # first wait, doubled per attempt
    max_backoff: float = 600.0

    def wait(self, attempts: int, asked: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before attempt ``attempts + 1``; the vendor's Retry-After wins when it gave one.

        Half the wait is fixed and half random ("equal jitter"), so a crowd of
        deliveries that failed together does not come back together.
        """
        if asked is not None:
            return max(0.0, asked)
        ceiling = min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def gives_up(self, first_at: float, next_at: float) -> bool:
        return next_at > first_at + self.retry_for
