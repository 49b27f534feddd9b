"""/metrics in Prometheus' text format, read from the store and from refusal counters.

Delivery counts come from ``store.counts`` and not from memory, so every server
process answers the same numbers, and a restart loses none. They count what the
store keeps: pruning (``delivery.keep_done_for``) lowers them, hence gauges.

Refused requests never reach the store (a bad request must not cost a write),
so they are counted in shared memory that the server's master process maps
before gunicorn forks its workers: every process adds to, and reads, the same
counters. They restart at zero with the server, as Prometheus counters may.
"""
from __future__ import annotations

import multiprocessing

from ..store import DEAD, DELIVERED, DRY_RUN, INTAKE, QUEUED, REJECTED, RETRYING, SKIPPED, STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SERIES = [
    ("eventmap_accepted", "Deliveries created for accepted events, per destination (every state).",
     lambda c: sum(c.get(s, 0) for s in STATES)),
    ("eventmap_delivered", "Deliveries the vendor accepted (2xx).", lambda c: c.get(DELIVERED, 0)),
    ("eventmap_dry_run", "Deliveries handed to the dry-run sink instead of the vendor (nothing sent).",
     lambda c: c.get(DRY_RUN, 0)),
    ("eventmap_skipped", "Deliveries not sent, with a reason (not subscribed, duplicate).", lambda c: c.get(SKIPPED, 0)),
    ("eventmap_rejected", "Deliveries that could not be sent: a bad event or mapping.", lambda c: c.get(REJECTED, 0)),
    ("eventmap_failed", "Deliveries that failed for good (dead letters, re-queueable).", lambda c: c.get(DEAD, 0)),
    ("eventmap_retrying", "Deliveries waiting to be tried again after a failure.", lambda c: c.get(RETRYING, 0)),
    ("eventmap_queue_depth", "Deliveries waiting: queued or retrying.", lambda c: c.get(QUEUED, 0) + c.get(RETRYING, 0)),
    ("eventmap_in_flight", "Deliveries leased by a worker right now.", lambda c: c.get("in_flight", 0)),
]


# always shown, even at zero, so a dashboard can graph them from the start
SHOWN_REFUSALS = (400, 401, 408, 413, 429, 503)


class Count:
    """One counter shared by every server process (made before gunicorn forks them)."""

    def __init__(self):
        self._value = multiprocessing.Value("q")

    def __repr__(self) -> str:
        return f"<Count {self.value()}>"

    def add(self, n: int = 1) -> None:
        with self._value.get_lock():
            self._value.value += n

    def value(self) -> int:
        with self._value.get_lock():
            return int(self._value.value)


class Refusals:
    """Requests answered 4xx or 5xx, by status: one shared counter per status from 400 to 599."""

    FIRST, LAST = 400, 599

    def __init__(self):
        # an anonymous shared mapping and a semaphore, both inherited by forked processes
        self._counts = multiprocessing.Array("q", self.LAST - self.FIRST + 1)

    def __repr__(self) -> str:
        return f"<Refusals {self.snapshot()}>"

    def count(self, status: int) -> None:
        if self.FIRST <= status <= self.LAST:
            with self._counts.get_lock():
                self._counts[status - self.FIRST] += 1

    def snapshot(self) -> dict[int, int]:
        with self._counts.get_lock():
            values = self._counts[:]
        return {self.FIRST + i: n for i, n in enumerate(values) if n or self.FIRST + i in SHOWN_REFUSALS}


def render(counts: dict[str, dict[str, int]], refused: dict[int, int] | None = None, inbox: int = 0,
           inbox_bytes: int = 0, inbox_full: int = 0,
           violations: dict[tuple[str, str, str], int] | None = None,
           logins: dict[str, int] | None = None) -> str:
    """The exposition text for ``store.counts(now)`` (events refused by the schema check sit under (intake)),
    ``Refusals.snapshot()``, ``store.inbox_size()`` (``inbox``, ``inbox_bytes``), the requests refused
    because the inbox was full (``inbox_full``), ``store.violation_counts()`` and the console's
    ``LoginGuard.snapshot()`` (``logins``; None without a console)."""
    destinations = sorted(d for d in counts if d != INTAKE)
    lines = ["# HELP eventmap_intake_rejected Events rejected at intake: they do not follow the Segment spec.",
             "# TYPE eventmap_intake_rejected gauge",
             f"eventmap_intake_rejected {counts.get(INTAKE, {}).get(REJECTED, 0)}",
             "# HELP eventmap_inbox_requests Requests stored whole (server.intake: queue) that the inbox processor "
             "has not yet turned into events.",
             "# TYPE eventmap_inbox_requests gauge",
             f"eventmap_inbox_requests {inbox}",
             "# HELP eventmap_inbox_bytes Bytes of the requests in the inbox (server.inbox_max_mb bounds them).",
             "# TYPE eventmap_inbox_bytes gauge",
             f"eventmap_inbox_bytes {inbox_bytes}",
             "# HELP eventmap_inbox_full_total Requests answered 429 because the inbox held server.inbox_max_requests "
             "requests or server.inbox_max_mb megabytes (they are in eventmap_refused_total too).",
             "# TYPE eventmap_inbox_full_total counter",
             f"eventmap_inbox_full_total {inbox_full}"]
    for name, help_text, value in SERIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{destination="{_label(d)}"}} {value(counts[d])}' for d in destinations]
    lines += ["# HELP eventmap_deliveries Deliveries kept in the store, by destination and state.",
              "# TYPE eventmap_deliveries gauge"]
    for destination in sorted(counts):
        for state in STATES:
            lines.append(f'eventmap_deliveries{{destination="{_label(destination)}",state="{state}"}} '
                         f'{counts[destination].get(state, 0)}')
    lines += ["# HELP eventmap_refused_total Requests refused, by HTTP status: 400 bad request, 401 write key, "
              "408 too slow, 413 too large, 429 store busy or inbox full (backpressure), 503 too many connections.",
              "# TYPE eventmap_refused_total counter"]
    lines += [f'eventmap_refused_total{{status="{status}"}} {n}' for status, n in sorted((refused or {}).items())]
    lines += ["# HELP eventmap_plan_violations Tracking-plan violations kept in the store, by source, event and rule "
              "(a JSON Schema keyword, or unplanned); the least frequent past the first "
              f"{VIOLATION_SERIES} are summed under event=\"(other)\".",
              "# TYPE eventmap_plan_violations gauge"]
    for (source, event, rule), n in _bounded(violations or {}):
        lines.append(f'eventmap_plan_violations{{source="{_label(source)}",event="{_label(event)}",'
                     f'rule="{_label(rule)}"}} {n}')
    if logins is not None:
        lines += ["# HELP eventmap_console_login_failures_total Console logins with a wrong username or password.",
                  "# TYPE eventmap_console_login_failures_total counter",
                  f"eventmap_console_login_failures_total {logins['failed']}",
                  "# HELP eventmap_console_login_backoff_total Console logins refused (429) while their client, or "
                  "every client not logged in lately, had to wait after wrong ones.",
                  "# TYPE eventmap_console_login_backoff_total counter",
                  f"eventmap_console_login_backoff_total {logins['refused']}"]
    return "\n".join(lines) + "\n"


VIOLATION_SERIES = 200   # unplanned event names are the client's choice: a bound on the series they make


def _bounded(violations: dict[tuple[str, str, str], int]) -> list[tuple[tuple[str, str, str], int]]:
    """The most frequent VIOLATION_SERIES series, the rest summed per source and rule under event (other)."""
    ranked = sorted(violations.items(), key=lambda item: (-item[1], item[0]))
    shown, rest = dict(ranked[:VIOLATION_SERIES]), ranked[VIOLATION_SERIES:]
    for (source, _, rule), n in rest:
        other = (source, "(other)", rule)
        shown[other] = shown.get(other, 0) + n
    return sorted(shown.items())


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
