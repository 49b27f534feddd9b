"""/metrics in Prometheus' text format, read from the store.

Counts come from ``store.counts`` and not from memory, so every server process
answers the same numbers, and a restart loses none. They count what the store
keeps: pruning (``delivery.keep_done_for``) lowers them, hence gauges, not counters.
"""
from __future__ import annotations

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


def render(counts: dict[str, dict[str, int]]) -> str:
    """The exposition text for ``store.counts(now)``; events refused by the schema check sit under (intake)."""
    destinations = sorted(d for d in counts if d != INTAKE)
    lines = ["# HELP eventmap_intake_rejected Events rejected at intake: they do not follow the Segment spec.",
             "# TYPE eventmap_intake_rejected gauge",
             f"eventmap_intake_rejected {counts.get(INTAKE, {}).get(REJECTED, 0)}"]
    for name, help_text, value in SERIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{destination="{_label(d)}"}} {value(counts[d])}' for d in destinations]
    lines += ["# HELP eventmap_deliveries Deliveries kept in the store, by destination and state.",
              "# TYPE eventmap_deliveries gauge"]
    for destination in sorted(counts):
        for state in STATES:
            lines.append(f'eventmap_deliveries{{destination="{_label(destination)}",state="{state}"}} '
                         f'{counts[destination].get(state, 0)}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
