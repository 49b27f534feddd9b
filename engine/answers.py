"""What a vendor's answer means, with no I/O: which statuses are worth a retry, how long Retry-After
asks to wait, the one-line summary errors and dead letters show, how much of an answer is read, and the
errors for no answer at all (``TransportError``), for a request that cannot go (``RequestError``) and for
an answer too long to use (``AnswerTooLarge``).

A leaf: the delivery workers, the step runner (source lookups and multi-step actions) and the HTTP
client all read these rules, so each is defined once, below every layer that uses it.
"""
from __future__ import annotations

import json
import time

from .problems import EventmapError
from .secrets import Masker

# Bytes of an answer eventmap reads (after Content-Encoding): the rest is never read, so a vendor cannot
# fill a worker's memory or the store. Lookups and step answers are a few KB; 1 MiB leaves room.
ANSWER_LIMIT = 1 << 20
EXCERPT = 1024   # characters kept of an answer over ANSWER_LIMIT


class TransportError(EventmapError):
    """No HTTP answer at all: timeout, refused connection, DNS, an answer not complete by the deadline.
    The vendor (or the way to it) is failing: always worth a retry."""


class RequestError(EventmapError):
    """This request could not be built or sent from here: a header value HTTP cannot carry, a URL that does
    not parse, a fault of this process. Not the vendor failing: the request's own verdict, never counted
    against the destination. ``final``: sending it again cannot help (the same event makes the same
    request); else it is retried on its own. ``path`` names the part of the request at fault."""

    def __init__(self, message: str, *, final: bool = True, path: str = ""):
        super().__init__(message)
        self.message, self.final, self.path = message, final, path


class AnswerTooLarge(EventmapError):
    """A step or lookup whose answer is read (by later steps or the mapping) got one over ANSWER_LIMIT.
    Final: the same request gets the same answer."""


class Excerpt(str):
    """The body of an answer over ANSWER_LIMIT: its first ``EXCERPT`` characters and a note saying so.
    Good for a summary; never a body a step may read (``whole``)."""

    @classmethod
    def of(cls, start: str) -> Excerpt:
        return cls(f"{start[:EXCERPT]}... (cut: the answer is over {describe_bytes(ANSWER_LIMIT)}, "
                   f"the most eventmap reads of an answer)")


def whole(body, what: str):
    """``body`` when it is a whole answer; AnswerTooLarge, naming ``what`` asked, when it is an Excerpt."""
    if isinstance(body, Excerpt):
        raise AnswerTooLarge(f"{what} got an answer over {describe_bytes(ANSWER_LIMIT)}, the most eventmap reads "
                             f"of an answer: it cannot be used")
    return body


def describe_bytes(size: int) -> str:
    """1048576 -> '1 MiB', 65536 -> '64 KiB', for messages and docs."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


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
        import email.utils  # only an HTTP-date Retry-After needs it: kept out of the CLI's start

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

