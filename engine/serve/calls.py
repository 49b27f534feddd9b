"""From one Segment API request to the events intake decides on: the part the collector and the inbox share.

With ``server.intake: validate`` the collector runs this before it answers; with
``queue`` it stores the request whole and the inbox processor runs this on it
later (``engine/serve/inbox.py``). One function, so both modes make the same
events from the same request: Segment's fields filled in, the client's address
added, oversized events rejected, the rest validated and routed. One event at a
time: whatever fails for one (``Intake.decide`` is the boundary) rejects it
alone, and the request's other events go on.
"""
from __future__ import annotations

from ..failures import event_failed
from ..intake import Intake
from ..problems import Problem
from ..store import NewEvent
from .browser import with_ip
from .segment_api import complete, items_of, oversize_error, utc


def decide_request(intake: Intake, call: str, body: dict, received_at: float,
                   ip: str | None, source: str | None = None) -> list[tuple[NewEvent, list]]:
    """``(NewEvent, schema errors)`` for each event of a parsed request, in order, nothing written;
    ``source``: the SDK source whose write key came with it (its tracking plan applies)."""
    received = utc(received_at)
    decided = []
    for item in items_of(call, body):
        try:
            event = with_ip(complete(item, call, body, received), ip)
            too_big = oversize_error(item)
        except Exception as exc:  # noqa: BLE001  the per-event boundary, before intake's own (decide)
            failed = event_failed(exc, "reading the request")
            decided.append(intake.reject(item, failed.reason, [failed.problem]))
            continue
        decided.append(intake.decide(event, source) if too_big is None
                       else intake.reject(event, "the event is too large", [Problem("", too_big)]))
    return decided
