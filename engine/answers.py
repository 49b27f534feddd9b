"""What a vendor's answer means, with no I/O: which statuses are worth a retry, how long Retry-After
asks to wait, the one-line summary errors and dead letters show, and the error for no answer at all.

A leaf: the delivery workers, the step runner (source lookups and multi-step actions) and the HTTP
client all read these rules, so each is defined once, below every layer that uses it.
"""
from __future__ import annotations

import email.utils
import json
import time

from .problems import EventmapError
from .secrets import Masker


class TransportError(EventmapError):
    """No HTTP answer at all: timeout, refused connection, DNS. Always worth a retry."""


def is_retryable(status: int) -> bool:
    """Segment's Destination Actions rule: 4xx is final except 408, 423, 429; 5xx retries except 501."""
    return status in (408, 423, 429) or (status >= 500 and status != 501)


def retry_after(headers: dict) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def summarize(body, request) -> str:
    """A vendor's answer in one short line, secrets masked, for errors and dead letters.

    An answer has no provenance, so a vendor echoing a key is caught by searching for the
    secrets' text: with a very short secret this may mask more of the answer than needed,
    never less.
    """
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    text = Masker(request.secrets).text(text or "(empty body)")
    return text if len(text) <= 200 else text[:197] + "..."

