"""Segment's HTTP Tracking API, request side: body, write key, limits, and the fields Segment fills in.

Pure functions over bytes, headers and dicts, so each rule is testable and the
WSGI app stays a thin switchboard. Anything wrong with a request raises
``ApiError`` with the HTTP status and a message that says what was expected.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import orjson

from .. import jsoncodec
from ..problems import EventmapError

KB = 1024
EVENT_LIMIT = 32 * KB          # bytes of JSON per event
BATCH_LIMIT = 500 * KB         # bytes of JSON per batch request
BATCH_MAX_EVENTS = 2500

CALLS = {"identify": "identify", "track": "track", "page": "page", "screen": "screen", "group": "group",
         "alias": "alias", "batch": "batch", "i": "identify", "t": "track", "p": "page", "s": "screen",
         "g": "group", "a": "alias", "b": "batch"}


class ApiError(EventmapError):
    """A request Segment's API would refuse: the status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def limit_for(call: str) -> int:
    return BATCH_LIMIT if call == "batch" else EVENT_LIMIT


def describe_limit(call: str) -> str:
    return "the 500 KB limit per batch request" if call == "batch" else "the 32 KB limit per event"


def read_body(stream, length: int | None, encoding: str | None, limit: int, what: str) -> bytes:
    """The request body, decompressed, refused as soon as it is known to pass ``limit``.

    A gzip body is inflated at most ``limit + 1`` bytes, so a small bomb cannot fill memory.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise ApiError(415, "unsupported_encoding",
                       f"Content-Encoding {encoding!r} is not supported (expected gzip, deflate or none)")
    # a compressed body may be a little larger than its contents when they do not compress
    allowed = limit if encoding == "identity" else limit + limit // 100 + 1024
    if length is not None and length > allowed:
        raise ApiError(400, "too_large", f"the request body is {length} bytes, over {what}")
    raw = stream.read(allowed + 1) if length is None else stream.read(length)
    if len(raw) > allowed:
        raise ApiError(400, "too_large", f"the request body is over {what}")
    if encoding == "identity":
        return raw
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise ApiError(400, "invalid_encoding", f"the body is not valid {encoding} data (Content-Encoding: {encoding})") from None
    if len(body) > limit:
        raise ApiError(400, "too_large", f"the decompressed request body is over {what}")
    return body


def parse_json(body: bytes):
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request body is empty: expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not UTF-8 text (byte {exc.start}); JSON must be UTF-8") from None
    try:
        data = jsoncodec.loads_bounded(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json",
                       f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", f"expected a JSON object, got {_kind(data)}")
    return data


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an HTTP Basic Authorization header; Segment's write key is the user."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def items_of(call: str, body: dict) -> list:
    """The events in a request: the batch list, or the body itself for a single call."""
    if call != "batch":
        return [body]
    items = body.get("batch")
    if not isinstance(items, list):
        raise ApiError(400, "invalid_batch", f"'batch' must be a list of events, got {_kind(items)}")
    if not items:
        raise ApiError(400, "invalid_batch", "'batch' is empty: expected at least one event")
    if len(items) > BATCH_MAX_EVENTS:
        raise ApiError(400, "too_large",
                       f"the batch has {len(items)} events, over the limit of {BATCH_MAX_EVENTS} per batch request")
    return items


def event_size(item) -> int:
    """Bytes of the event as compact JSON: orjson, in C, for all but the values it will not write (a lone
    surrogate, an integer past 64 bits), which json counts (surrogatepass) and the storable check names."""
    try:
        return len(orjson.dumps(item))
    except TypeError:
        return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def oversize_error(item) -> str | None:
    size = event_size(item)
    if size > EVENT_LIMIT:
        return f"the event is {size} bytes of JSON, over the 32 KB limit per event ({EVENT_LIMIT} bytes)"
    return None


def complete(item, call: str, body: dict, received_at: datetime):
    """One event as Segment stores it: batch context and integrations merged in, type from the path,
    receivedAt stamped, timestamp corrected for the client's clock, messageId filled in."""
    if not isinstance(item, dict):
        return item   # the schema check rejects it with the words for it
    event = {k: v for k, v in item.items() if k != "writeKey"}
    if call != "batch":
        event["type"] = call   # the path says which call it is
    else:
        for key in ("context", "integrations"):
            event[key] = _merged(body.get(key), item.get(key))
            if event[key] is None:
                del event[key]
    if not event.get("messageId"):
        event["messageId"] = f"eventmap-{uuid.uuid4()}"
    sent_at = item.get("sentAt") or (body.get("sentAt") if call == "batch" else None)
    if sent_at is not None:
        event["sentAt"] = sent_at
    event["receivedAt"] = iso(received_at)
    _correct_timestamp(event, sent_at, received_at)
    return event


def _merged(outer, inner):
    """Batch-level values under the event's own: the event's keys win."""
    if isinstance(outer, dict) and isinstance(inner, dict):
        return {**outer, **inner}
    return inner if inner is not None else outer


def _correct_timestamp(event: dict, sent_at, received_at: datetime) -> None:
    """timestamp = receivedAt - (sentAt - originalTimestamp), as Segment corrects a device's clock.

    The time the client says the call happened is kept as originalTimestamp. Without sentAt
    there is nothing to correct with; without any time, the call happened when it arrived.
    An unreadable time is left as sent, for the schema check to name. So is a pair whose
    correction falls outside the years 1 to 9999 (a device clock set to 9999-12-31 that sent
    at 0001-01-01): the correction of a clock that wrong means nothing, and the time the
    device gave is still a readable date.
    """
    original = event.get("originalTimestamp") or event.get("timestamp")
    if original is None:
        event["timestamp"] = iso(received_at)
        return
    event["originalTimestamp"] = original
    happened, sent = parse_time(original), parse_time(sent_at)
    if happened is None or sent is None:
        event["timestamp"] = original
        return
    try:
        event["timestamp"] = iso(received_at - (sent - happened))
    except OverflowError:
        event["timestamp"] = original


def parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc(seconds: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "nothing"}.get(
        type(value), "a number")
