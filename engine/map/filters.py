"""Named filters of the mapping language.

Each filter is a small pure function ``f(value, *args)``. The same table serves
Jinja2 templates (``{{ traits.email | lower }}``) and YAML
(``"@filter": [lower, {hmac_sha256: [key]}]``, called as
``FILTERS[name](value, *args)``).

Conventions shared by every built-in filter:

* Missing in, missing out: ``None`` (or a Jinja2 ``Undefined``) gives ``None``,
  so absent data stays absent and the caller can drop the field. ``default``
  is the one exception, since replacing missing values is its job.
* A value of the wrong type, or one that cannot be converted, raises
  :class:`FilterError` with a plain sentence, never a bare traceback.

Users add their own filters with :func:`register_filter`; those are stored
as given (no missing-value handling is added for them).
"""
from __future__ import annotations

import base64 as _b64
import binascii
import functools
import hashlib
import hmac as _hmac
import math
import re
import uuid as _uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from datetime import date as _date
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote as _quote

from jinja2 import Undefined

from engine.problems import EventmapError

from .. import jsoncodec as _jsoncodec
from .runtime import is_empty, is_missing, json_data

__all__ = ["FILTERS", "FilterError", "register_filter"]


class FilterError(EventmapError, ValueError):
    """A filter could not convert its input; the message is one plain sentence."""


class TooLarge(FilterError):
    """A filter or template would build text or a list larger than ``MAX_SIZE``."""


MAX_SIZE = 10_000_000  # characters of text, items of a list, that one filter or template may build


def refuse_over(size: int, what: str) -> None:
    """TooLarge when ``size`` is past the bound: checked before making the value where that can be known."""
    if size > MAX_SIZE:
        raise TooLarge(f"{what} would make {size:,} characters or items; a template may build at most {MAX_SIZE:,}")


FILTERS: dict[str, Callable[..., Any]] = {}
# uuid5 namespace for ids eventmap derives (a fixed random UUID, so ids never collide with other tools')
EVENTMAP_NAMESPACE = _uuid.UUID("6f1d2f0e-5b8a-4c57-9a51-3c0e7d2b9a44")


def register_filter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding ``fn(value, *args)`` to FILTERS under ``name``; never overwrites."""
    _check_new_name(name)

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise ValueError(f"filter {name!r} must be a function, got {type(fn).__name__}")
        _check_new_name(name)  # a filter of the same name may have arrived meanwhile
        FILTERS[name] = fn
        return fn

    return decorator


def _check_new_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"filter name {name!r} is not usable: it must be a Python/Jinja2 identifier "
            "such as 'my_filter'"
        )
    if name in FILTERS:
        raise ValueError(
            f"a filter named {name!r} already exists; register yours under another name"
        )


# --------------------------------------------------------------------------
# helpers


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def _plain(value: Any) -> Any:
    """Jinja2's Undefined stands for missing data; treat it exactly like None."""
    return None if isinstance(value, Undefined) else value


def _missing_stays_missing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in so None/Undefined in gives None out, and Undefined args read as None."""

    @functools.wraps(fn)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, Undefined):
            return None
        if args:
            args = tuple(_plain(a) for a in args)
        if kwargs:
            kwargs = {k: _plain(v) for k, v in kwargs.items()}
        return fn(value, *args, **kwargs)

    wrapper.when_present = fn  # type: ignore[attr-defined]  # generated code, which has no Undefined, tests for None itself and calls this
    return wrapper


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {_show(value)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(filter_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{filter_name} expects text, {_got(value)}")
    return value


def _raw(filter_name: str, value: Any, what: str = "value") -> bytes:
    """Text (encoded as UTF-8) or bytes, for hashing and encoding filters."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise FilterError(
        f"{filter_name} expects text or bytes as its {what}, {_got(value)}; "
        "convert it first with the 'string' filter"
    )


def _mapping(filter_name: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise FilterError(f"{filter_name} expects an object (mapping), {_got(value)}")
    return value


# --------------------------------------------------------------------------
# date-time parsing, shared by epoch_ms, epoch_s, iso8601 and date

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ISO_8601 = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:
        [Tt\ ]
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?: :(?P<second>\d{2}) (?:[.,](?P<fraction>\d+))? )?
        (?P<tz>[Zz] | [+-]\d{2}(?::?\d{2})?)?
    )?
    """,
    re.VERBOSE,
)


# What analytics libraries send ("2024-05-12T10:11:12.123Z"): datetime.fromisoformat reads it the same way
# (UTC, digits past microseconds truncated) in a fifth of the time of the general pattern below.
_UTC_ISO_8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


# how every text _iso_or_none reads starts (after the spaces strip() takes): a quick, C-level first test
_MAY_BE_ISO = re.compile(r"\s*\d{4}-").match


def _parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 date or date-time into an aware UTC datetime (naive means UTC)."""
    parsed = _iso_or_none(text)
    if parsed is None:
        raise FilterError(f"{text!r} is not an ISO-8601 date-time")
    return parsed


def _iso_or_none(text: str) -> datetime | None:
    """_parse_iso's answer, None where it refuses the text (``try`` keeps such text without raising)."""
    if not _MAY_BE_ISO(text):  # both patterns start with four digits and "-" (most text fails here)
        return None
    if _UTC_ISO_8601.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # month 13, say: the general path words the error
    m = _ISO_8601.fullmatch(text.strip())
    if not m:
        return None
    g = m.groupdict()
    fraction = (g["fraction"] or "")[:6].ljust(6, "0")  # beyond microseconds is truncated
    tz = UTC
    if g["tz"] and g["tz"] not in "Zz":
        digits = g["tz"][1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if g["tz"][0] == "-" else offset)
    try:
        parsed = datetime(
            int(g["year"]), int(g["month"]), int(g["day"]),
            int(g["hour"] or 0), int(g["minute"] or 0), int(g["second"] or 0),
            int(fraction), tzinfo=tz,
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _from_epoch_ms(filter_name: str, ms: float) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except (ValueError, OverflowError):
        raise FilterError(f"{filter_name}: {_show(ms)} milliseconds is outside the supported date range") from None


def _as_datetime(filter_name: str, value: Any) -> datetime:
    """An ISO-8601 string, epoch milliseconds, or a datetime/date object, as aware UTC."""
    if isinstance(value, str):
        return _parse_iso(value)
    if _is_number(value):
        if not math.isfinite(value):
            raise FilterError(f"{filter_name} cannot use {value!r} as a time")
        return _from_epoch_ms(filter_name, value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, _date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise FilterError(
        f"{filter_name} expects an ISO-8601 date-time string or epoch milliseconds, {_got(value)}"
    )


def _whole(filter_name: str, value: float) -> int:
    if not math.isfinite(value):
        raise FilterError(f"{filter_name} cannot use {value!r} as a time")
    return int(value)


# --------------------------------------------------------------------------
# text


@register_filter("snake_case")
@_missing_stays_missing
def snake_case(value: Any) -> str:
    """Audience/trait key the way Segment Engage makes it: "Order Completed Last 30days" -> order_completed_last_30days.

    Lowercased; a camelCase boundary (lower->Upper, or the last capital of an
    acronym before a lowercase letter: "HTTPServer" -> http_server) starts a
    word; any run of non-alphanumerics becomes one "_"; leading/trailing "_"
    trimmed. Digits are never split from adjacent letters ("Last30Days" ->
    last30days). Non-ASCII letters are kept ("Café Crème" -> café_crème).

    Example: "Order Completed" | snake_case() -> "order_completed"
    """
    text = _text("snake_case", value)
    words: list[str] = []
    word: list[str] = []
    for i, ch in enumerate(text):
        if not ch.isalnum():
            if word:
                words.append("".join(word))
                word = []
            continue
        if word and ch.isupper():
            prev = word[-1]
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if prev.islower() or (prev.isupper() and nxt.islower()):
                words.append("".join(word))
                word = []
        word.append(ch)
    if word:
        words.append("".join(word))
    return "_".join(words).lower()


@register_filter("lower")
@_missing_stays_missing
def lower(value: Any) -> str:
    """Lowercase text, e.g. emails before hashing or matching.

    Example: "Ann@Example.COM" | lower() -> "ann@example.com"
    """
    return _text("lower", value).lower()


@register_filter("upper")
@_missing_stays_missing
def upper(value: Any) -> str:
    """Uppercase text, e.g. country or currency codes.

    Example: "eu" | upper() -> "EU"
    """
    return _text("upper", value).upper()


@register_filter("trim")
@_missing_stays_missing
def trim(value: Any) -> str:
    """Strip leading and trailing whitespace (Unicode-aware).

    Example: "  ann  " | trim() -> "ann"
    """
    return _text("trim", value).strip()


# --------------------------------------------------------------------------
# dates and times


@register_filter("epoch_ms")
@_missing_stays_missing
def epoch_ms(value: Any) -> int:
    """ISO-8601 date-time (naive = UTC) -> integer milliseconds since the Unix epoch; numbers pass through as int.

    Example: "2024-01-02T03:04:05Z" | epoch_ms() -> 1704164645000
    """
    if value.__class__ is str:  # the usual case, in fewer calls; text that is not a date fails below
        parsed = _iso_or_none(value)
        if parsed is not None:
            return _epoch_ms_of(parsed)
    if _is_number(value):
        return _whole("epoch_ms", value)
    return _epoch_ms_of(_as_datetime("epoch_ms", value))


@register_filter("epoch_s")
@_missing_stays_missing
def epoch_s(value: Any) -> int:
    """ISO-8601 date-time (naive = UTC) -> integer seconds since the Unix epoch; numbers (taken as seconds) pass through as int.

    Example: "2024-01-02T03:04:05Z" | epoch_s() -> 1704164645
    """
    if value.__class__ is str:  # the usual case, in fewer calls; text that is not a date fails below
        parsed = _iso_or_none(value)
        if parsed is not None:
            return _epoch_s_of(parsed)
    if _is_number(value):
        return _whole("epoch_s", value)
    return _epoch_s_of(_as_datetime("epoch_s", value))


@register_filter("iso8601")
@_missing_stays_missing
def iso8601(value: Any) -> str:
    """Normalise a date-time (ISO-8601 string, or epoch milliseconds) to UTC "YYYY-MM-DDTHH:MM:SS.sssZ".

    Example: 1704164645000 | iso8601() -> "2024-01-02T03:04:05.000Z"
    """
    return _iso8601_of(_as_datetime("iso8601", value))


@register_filter("date")
@_missing_stays_missing
def to_date(value: Any) -> str:
    """The UTC calendar date "YYYY-MM-DD" of a date-time (ISO-8601 string, or epoch milliseconds).

    Example: "2024-01-02T03:04:05Z" | date() -> "2024-01-02"
    """
    return _date_of(_as_datetime("date", value))


def _epoch_ms_of(dt: datetime) -> int:
    since = dt - _EPOCH  # (since // 1 ms), in integers: days may be negative, seconds and microseconds are not
    return (since.days * 86400 + since.seconds) * 1000 + since.microseconds // 1000


def _epoch_s_of(dt: datetime) -> int:
    since = dt - _EPOCH
    return since.days * 86400 + since.seconds


def _iso8601_of(dt: datetime) -> str:
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z")


def _date_of(dt: datetime) -> str:
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"


# the date filters' answer for text, from the parsed date-time (``try`` parses without raising)
_FROM_TEXT = {"epoch_ms": _epoch_ms_of, "epoch_s": _epoch_s_of, "iso8601": _iso8601_of, "date": _date_of}


# --------------------------------------------------------------------------
# encoding and hashing


@register_filter("base64")
@_missing_stays_missing
def to_base64(value: Any) -> str:
    """Standard (padded, non-URL-safe) base64 of UTF-8 text or bytes, e.g. for Basic auth.

    Example: "user:pass" | base64() -> "dXNlcjpwYXNz"
    """
    return _b64.b64encode(_raw("base64", value)).decode("ascii")


@register_filter("base64_decode")
@_missing_stays_missing
def from_base64(value: Any) -> str:
    """Decode standard base64 (whitespace and missing padding tolerated) to UTF-8 text.

    Example: "dXNlcjpwYXNz" | base64_decode() -> "user:pass"
    """
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", errors="replace")
    text = "".join(_text("base64_decode", value).split())
    text += "=" * (-len(text) % 4)
    try:
        raw = _b64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FilterError(f"{_show(value)} is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FilterError(f"{_show(value)} is base64 but does not decode to UTF-8 text") from None


@register_filter("sha256")
@_missing_stays_missing
def sha256(value: Any) -> str:
    """Lowercase hex SHA-256 of UTF-8 text, as ad platforms want for hashed identifiers.

    Example: "ann@example.com" | sha256() -> "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
    """
    return hashlib.sha256(_raw("sha256", value)).hexdigest()


def _hmac_digest(filter_name: str, value: Any, key: Any, digest: Callable[..., Any] = hashlib.sha256) -> bytes:
    if key is None:
        raise FilterError(f"{filter_name} needs a key (secret), but the key is missing")
    return _hmac.new(_raw(filter_name, key, "key"), _raw(filter_name, value), digest).digest()


@register_filter("hmac_sha256")
@_missing_stays_missing
def hmac_sha256(value: Any, key: Any) -> str:
    """Lowercase hex HMAC-SHA256 of the value under key, for signed requests and webhooks.

    Example: "body" | hmac_sha256("key") -> "515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1"
    """
    return _hmac_digest("hmac_sha256", value, key).hex()


@register_filter("url_segment")
@_missing_stays_missing
def url_segment(value: Any) -> str:
    """Percent-encode one URL path segment, '/' included: an id from a payload must not reach another path.

    Example: "a/b c" | url_segment() -> "a%2Fb%20c"
    """
    text = value if isinstance(value, str) else str(value)
    return text if _URL_SAFE(text) else _quote(text, safe="")


# text quote() leaves as it is (its always-safe characters): most ids, checked in C
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


@register_filter("uuid5")
@_missing_stays_missing
def to_uuid5(value: Any) -> str:
    """A UUID derived from the text, the same every time: stable message ids for retried deliveries.

    Example: "gladly:42:created" | uuid5() -> "5acdb221-ec5b-5240-82c8-f6e8aa7f72e3"
    """
    return str(_uuid.uuid5(EVENTMAP_NAMESPACE, _text("uuid5", value)))


@register_filter("hmac_sha256_base64")
@_missing_stays_missing
def hmac_sha256_base64(value: Any, key: Any) -> str:
    """Standard base64 of the raw HMAC-SHA256 of the value under key, for vendors that sign that way.

    Example: "body" | hmac_sha256_base64("key") -> "UVquEztDXUAAlWcx9orlz164XU8NxqVG0r/NNZXsGuE="
    """
    return _b64.b64encode(_hmac_digest("hmac_sha256_base64", value, key)).decode("ascii")


@register_filter("hmac_sha1")
@_missing_stays_missing
def hmac_sha1(value: Any, key: Any) -> str:
    """Lowercase hex HMAC-SHA1 of the value under key, as generic webhooks sign.

    Example: "hello" | hmac_sha1("key") -> "b34ceac4516ff23a143e61d79d0fa7a4fbe5f266"
    """
    return _hmac_digest("hmac_sha1", value, key, hashlib.sha1).hex()


@register_filter("hmac_sha1_base64")
@_missing_stays_missing
def hmac_sha1_base64(value: Any, key: Any) -> str:
    """Standard base64 of the raw HMAC-SHA1 of the value under key.

    Example: "hello" | hmac_sha1_base64("key") -> "s0zqxFFv8joUPmHXnQ+npPvl8mY="
    """
    return _b64.b64encode(_hmac_digest("hmac_sha1_base64", value, key, hashlib.sha1)).decode("ascii")


@register_filter("hmac_sha512")
@_missing_stays_missing
def hmac_sha512(value: Any, key: Any) -> str:
    """Lowercase hex HMAC-SHA512 of the value under key.

    Example: "hello" | hmac_sha512("key") -> "ff06ab36757777815c008d32c8e14a705b4e7bf310351a06a23b612dc4c7433e7757d20525a5593b71020ea2ee162d2311b247e9855862b270122419652c0c92"
    """
    return _hmac_digest("hmac_sha512", value, key, hashlib.sha512).hex()


@register_filter("hmac_sha512_base64")
@_missing_stays_missing
def hmac_sha512_base64(value: Any, key: Any) -> str:
    """Standard base64 of the raw HMAC-SHA512 of the value under key.

    Example: "hello" | hmac_sha512_base64("key") -> "/warNnV3d4FcAI0yyOFKcFtOe/MQNRoGojthLcTHQz53V9IFJaVZO3ECDqLuFi0jEbJH6YVYYrJwEiQZZSwMkg=="
    """
    return _b64.b64encode(_hmac_digest("hmac_sha512_base64", value, key, hashlib.sha512)).decode("ascii")


@register_filter("json")
@_missing_stays_missing
def to_json(value: Any, sort_keys: Any = False) -> str:
    """Compact JSON text (UTF-8 kept, no spaces), keys sorted when given true, for vendors taking JSON in a string field.

    Example: {"b": 1, "a": [2]} | json(true) -> "{\\"a\\":[2],\\"b\\":1}"
    """
    if not isinstance(sort_keys, bool):
        raise FilterError(f"json's sort_keys argument must be true or false, {_got(sort_keys)}")
    try:
        return _jsoncodec.dumps(value, sort_keys=sort_keys, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FilterError(f"json cannot encode {_show(value)}: {exc}") from None


# --------------------------------------------------------------------------
# phone numbers


@register_filter("e164")
@_missing_stays_missing
def e164(value: Any, region: Any = None) -> str:
    """Phone number -> E.164 ("+14155550132") where possible, else the trimmed input unchanged.

    A number starting with "+" is parsed on its own; otherwise ``region`` (an
    ISO 3166 code such as "GB") says which country's dialling rules apply.
    When the number cannot be parsed, is not a possible number, or has no "+"
    and no region, the input is returned trimmed rather than raising: a
    phone number a vendor may still accept is better than a dropped event.

    Example: "020 7946 0018" | e164("GB") -> "+442079460018"
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text("e164", value).strip()
    if region is not None and not isinstance(region, str):
        raise FilterError(f"e164's region must be a country code such as 'GB', {_got(region)}")
    region_code = None if text.startswith("+") or not region else region.strip().upper()
    import phonenumbers  # its metadata takes a tenth of the CLI's start; loaded by the first phone number

    try:
        number = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(number):
        return text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------
# type conversion

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


@register_filter("string")
@_missing_stays_missing
def to_string(value: Any) -> str:
    """Value as text: booleans as "true"/"false", objects and lists as compact JSON, bytes as UTF-8.

    Example: 42 | string() -> "42"
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return to_json(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise FilterError(f"string cannot read {_show(value)} as UTF-8 text") from None
    return str(value)


def text_of(value: Any) -> str:
    """The text a value gives inside a template (``{{ }}`` in text, ``~``, ``join``): null and missing data
    are nothing (""), everything else as the ``string`` filter writes it (true/false, lists and objects as JSON)."""
    if value.__class__ is str:
        return value
    if is_missing(value):
        return ""
    return to_string(json_data(value))


@register_filter("number")
@_missing_stays_missing
def to_number(value: Any) -> int | float:
    """Text or number -> int when integral ("4.0" -> 4), else float; for vendors that reject numbers sent as strings.

    Example: "12.50" | number() -> 12.5
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FilterError(f"number expects text or a number, {_got(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{value!r} is not a finite number")
        return int(value) if value.is_integer() else value
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise FilterError(f"{value!r} is not a number")
    try:
        exact = Decimal(text)
        return int(exact) if exact == exact.to_integral_value() else float(exact)
    except (InvalidOperation, OverflowError, ValueError):
        raise FilterError(f"{value!r} is not a number") from None


@register_filter("boolean")
@_missing_stays_missing
def to_boolean(value: Any) -> bool:
    """true/false from a boolean, 1/0, or the text "true"/"false"/"1"/"0" (any case, trimmed).

    Example: "true" | boolean() -> true
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FilterError(f"{_show(value)} is not a boolean; expected true, false, 1 or 0")


# --------------------------------------------------------------------------
# objects and lists

_SCALARS = (str, int, float, bool)


@register_filter("flatten")
@_missing_stays_missing
def flatten(value: Any, sep: Any = ".") -> dict:
    """Nested object -> one level with joined keys ("a.b"); lists become compact JSON, None is dropped. For vendors (e.g. Crisp) taking only flat values.

    Example: {"a": {"b": 1}, "c": 2} | flatten(".") -> {"a.b": 1, "c": 2}
    """
    obj = _mapping("flatten", value)
    if not isinstance(sep, str):
        raise FilterError(f"flatten's separator must be text, {_got(sep)}")
    flat: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, item in node.items():
            name = f"{prefix}{sep}{key}" if prefix else str(key)
            if _missing(item):
                continue
            if isinstance(item, dict):
                walk(item, name)
                continue
            if name in flat:
                raise FilterError(f"flatten would produce the key {name!r} twice; the object has clashing keys")
            flat[name] = item if isinstance(item, _SCALARS) else to_json(item)

    walk(obj, "")
    return flat


def _empty(item: Any) -> bool:
    return _missing(item) or (isinstance(item, (str, list, tuple, dict)) and len(item) == 0)


@register_filter("compact")
@_missing_stays_missing
def compact(value: Any) -> dict | list:
    """Drop None, "", [] and {} entries from an object (one level) or a list; false and 0 are kept.

    Example: {"a": "", "b": 0, "c": null, "d": []} | compact() -> {"b": 0}
    """
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if not _empty(v)}
    if isinstance(value, (list, tuple)):
        return [v for v in value if not _empty(v)]
    raise FilterError(f"compact expects an object or a list, {_got(value)}")


@register_filter("default")
def default(value: Any, fallback: Any) -> Any:
    """The fallback when the value is empty (null, undefined, "", [] or {}; false and 0 are values), else the value.

    Example: "" | default("n/a") -> "n/a"
    """
    value = _plain(value)
    return _plain(fallback) if is_empty(value) else value


def _keys(args: tuple) -> list:
    """Keys given one per argument, or as one list (handy in YAML: {pick: [[a, b]]})."""
    keys: list = []
    for arg in args:
        if isinstance(arg, (list, tuple)):
            keys.extend(arg)
        else:
            keys.append(arg)
    return keys


@register_filter("omit")
@_missing_stays_missing
def omit(value: Any, *keys: Any) -> dict:
    """A copy of the object without the named keys (absent keys are ignored).

    Example: {"a": 1, "b": 2} | omit("b") -> {"a": 1}
    """
    obj = _mapping("omit", value)
    drop = set(_keys(keys))
    return {k: v for k, v in obj.items() if k not in drop}


@register_filter("pick")
@_missing_stays_missing
def pick(value: Any, *keys: Any) -> dict:
    """A new object with only the named keys that are present, in the order named.

    Example: {"a": 1, "b": 2} | pick("a") -> {"a": 1}
    """
    obj = _mapping("pick", value)
    return {k: obj[k] for k in dict.fromkeys(_keys(keys)) if k in obj}


@register_filter("join")
@_missing_stays_missing
def join(value: Any, separator: Any = "", attribute: Any = None) -> str:
    """The items of a list as text with the separator between them; null and missing items are left out (no separator for them), others are written as text ("" stays).

    ``attribute`` (a key, or a dotted path) joins that field of each item, as Jinja2's join does.

    Example: ["Main St", null, "Oslo"] | join(", ") -> "Main St, Oslo"
    """
    if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
        raise FilterError(f"join expects a list, {_got(value)}")
    if not isinstance(separator, str):
        raise FilterError(f"join's separator must be text, {_got(separator)}")
    items = value if attribute is None else (_field(item, attribute) for item in value)
    parts = [text_of(item) for item in items if not is_missing(item)]
    refuse_over(sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0), "the 'join' filter")
    return separator.join(parts)


def _field(item: Any, attribute: Any) -> Any:
    """``item[attribute]``, a dotted path walking objects (and list indexes), or None when it is not there."""
    for key in str(attribute).split(".") if not isinstance(attribute, int) else [attribute]:
        if isinstance(item, dict):
            item = item.get(key)
        elif isinstance(item, list) and (isinstance(key, int) or key.lstrip("-").isdigit()):
            index = int(key)
            item = item[index] if -len(item) <= index < len(item) else None
        else:
            return None
    return item


@register_filter("split_name")
@_missing_stays_missing
def split_name(value: Any, part: Any) -> str | None:
    """First word ("first") or the remaining words ("last") of a full name; a one-word name has no last name (None).

    Example: "Ann Marie Lee" | split_name("last") -> "Marie Lee"
    """
    if part not in ("first", "last"):
        raise FilterError(f"split_name's part must be 'first' or 'last', got {_show(part)}")
    words = _text("split_name", value).split()
    if not words:
        return None
    if part == "first":
        return words[0]
    return " ".join(words[1:]) or None


# --------------------------------------------------------------------------
# text replacement


def _replaced(filter_name: str, value: Any, old: Any, new: Any, flags: int) -> str:
    if not flags and value.__class__ is str and old.__class__ is str and old and new.__class__ is str:
        # the usual case: text in, text to replace and text to put, written in the mapping
        if len(value) + value.count(old) * len(new) > MAX_SIZE:
            refuse_over(len(value) + value.count(old) * len(new), filter_name)
        return value.replace(old, new)
    text = str(value) if _is_number(value) else _text(filter_name, value)
    if not isinstance(old, str) or not old:
        raise FilterError(f"{filter_name}'s old text must be non-empty text, {_got(old)}")
    if new is None:
        new = ""
    if not isinstance(new, str):
        raise FilterError(f"{filter_name}'s new text must be text, {_got(new)}")
    if not flags:  # the plain text replaced, as a pattern of it would be (non-overlapping, left to right)
        refuse_over(len(text) + text.count(old) * len(new), f"{filter_name}")
        return text.replace(old, new)
    pattern = re.compile(re.escape(old), flags)
    refuse_over(len(text) + len(pattern.findall(text)) * len(new), f"{filter_name}")
    return pattern.sub(lambda _match: new, text)


@register_filter("replace")
@_missing_stays_missing
def replace(value: Any, old: Any, new: Any = "") -> str:
    """Every occurrence of old replaced by new (numbers are read as text).

    Example: "2024-01-02" | replace("-", "/") -> "2024/01/02"
    """
    return _replaced("replace", value, old, new, 0)


@register_filter("replace_i")
@_missing_stays_missing
def replace_i(value: Any, old: Any, new: Any = "") -> str:
    """Every occurrence of old, in any case, replaced by new: "Order Completed" and "order completed" alike.

    Example: "Order COMPLETED" | replace_i("completed", "Done") -> "Order Done"
    """
    return _replaced("replace_i", value, old, new, re.IGNORECASE)


# A pattern of literal characters and bracket classes, with at most a trailing "+": it cannot match empty
# text and a match attempt never backtracks (the one repeat ends the pattern), so Python's own engine runs it
# in linear time too, with the answers RE2 gives, and without RE2's per-call cost (tests/test_filter_fast_paths.py).
_ESCAPED = r"\\[^0-9A-Za-z]"  # an escaped punctuation character: itself, in both engines
_CLASS_ITEM = rf"(?:[^\\\[\]\-^]|{_ESCAPED})"
_PLAIN_PATTERN = re.compile(
    rf"(?:[^\\.^$*+?{{}}\[\]|()]|{_ESCAPED}|\[\^?(?:{_CLASS_ITEM}(?:-{_CLASS_ITEM})?)+\])+\+?")


@functools.lru_cache(maxsize=1024)
def regex(pattern: str):
    """``pattern`` compiled by RE2 (linear time in the text, whatever the pattern); FilterError when RE2 refuses it.

    A plain pattern (_PLAIN_PATTERN) is Python's compiled one once RE2 has accepted it: same matches, faster.
    """
    compiled = _re2_compiled(pattern)
    return re.compile(pattern) if _PLAIN_PATTERN.fullmatch(pattern) else compiled


@functools.lru_cache(maxsize=1024)
def _re2_compiled(pattern: str):
    import re2  # google-re2

    options = re2.Options()
    options.log_errors = False  # the error is ours to word, not a line on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise FilterError(f"the pattern {pattern!r} is not a regular expression RE2 accepts: {detail}") from None


def _literal_pattern(args: list) -> str | None:
    """The load-time check of regex_replace: its pattern is written in the mapping, and RE2 compiles it."""
    if not args or not isinstance(args[0], str):
        return "regex_replace needs its pattern written in the mapping as text, e.g. regex_replace('[\\s.]+', '_')"
    try:
        regex(args[0])
    except FilterError as exc:
        return str(exc)
    return None


@register_filter("regex_replace")
@_missing_stays_missing
def regex_replace(value: Any, pattern: Any, replacement: Any = "") -> str:
    """Every match of an RE2 pattern replaced (`\\1` or `\\g<name>` in the replacement insert a group); the pattern is written in the mapping and checked when it loads, and runs in time linear in the text.

    Example: "Order Completed.v2" | regex_replace("[\\\\s.]+", "_") -> "Order_Completed_v2"
    """
    text = str(value) if _is_number(value) else _text("regex_replace", value)
    if not isinstance(pattern, str):
        raise FilterError(f"regex_replace's pattern must be text, {_got(pattern)}")
    if replacement is None:
        replacement = ""
    if not isinstance(replacement, str):
        raise FilterError(f"regex_replace's replacement must be text, {_got(replacement)}")
    compiled = regex(pattern) if "\\" not in replacement else _re2_compiled(pattern)  # \1: RE2's wording
    matches = sum(1 for _ in compiled.finditer(text))
    groups = replacement.count("\\")  # each group inserted can be at most the whole text
    refuse_over(len(text) + matches * len(replacement) + groups * len(text), "regex_replace")
    try:
        return compiled.sub(replacement, text)
    except (re.error, ValueError, IndexError) as exc:  # a group the pattern does not have
        raise FilterError(f"regex_replace's replacement {replacement!r} does not fit the pattern: {exc}") from None


regex_replace.check_arguments = _literal_pattern  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# user agents


@functools.lru_cache(maxsize=4096)
def _parsed_user_agent(text: str) -> dict:
    """The fields of one user-agent string; kept, since the same few strings recur across events."""
    from ua_parser import parse  # imported on first use: its rules take a moment to load

    def version(part: Any) -> str | None:
        numbers = [n for n in (part.major, part.minor, part.patch) if n] if part is not None else []
        return ".".join(numbers) or None

    result = parse(text)
    fields = {
        "browser": result.user_agent.family if result.user_agent else None,
        "browser_version": version(result.user_agent),
        "os": result.os.family if result.os else None,
        "os_version": version(result.os),
        "device": result.device.family if result.device else None,
        "device_brand": result.device.brand if result.device else None,
        "device_model": result.device.model if result.device else None,
    }
    fields["device_type"] = device_type(fields["device"], fields["device_brand"], fields["os"])
    return {key: value for key, value in fields.items() if value not in (None, "", "Other")}


# What uap-core's device and OS families say about the kind of device (user_agent's device_type). uap-core
# names crawlers' device "Spider" and Android tablets' brand "Generic_Android_Tablet"; the rest is its families.
_TABLET_DEVICES = frozenset({"iPad", "Kindle", "Generic Tablet"})
_TABLET_BRANDS = frozenset({"Generic_Android_Tablet"})
_MOBILE_DEVICES = frozenset({"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"})
_MOBILE_OS = frozenset({"Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Firefox OS"})
_DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Debian", "Fedora", "Chrome OS", "FreeBSD",
                         "OpenBSD", "NetBSD", "Solaris"})


def device_type(device: str | None, brand: str | None, os: str | None) -> str | None:
    """bot, tablet, mobile or desktop from ua-parser's device and OS families; None when they do not say."""
    if device == "Spider":
        return "bot"
    if device in _TABLET_DEVICES or brand in _TABLET_BRANDS:
        return "tablet"
    if device in _MOBILE_DEVICES or os in _MOBILE_OS:
        return "mobile"
    if os in _DESKTOP_OS and device in (None, "Other", "Mac"):
        return "desktop"
    return None


@register_filter("user_agent")
@_missing_stays_missing
def user_agent(value: Any) -> dict:
    """A user-agent string parsed (ua-parser) into browser, browser_version, os, os_version, device, device_brand, device_model and device_type (bot, tablet, mobile or desktop, from ua-parser's device and OS families); unknown parts are left out.

    Example: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1" | user_agent() -> {"browser": "Mobile Safari", "browser_version": "17.4", "os": "iOS", "os_version": "17.4", "device": "iPhone", "device_brand": "Apple", "device_model": "iPhone", "device_type": "mobile"}
    """
    return dict(_parsed_user_agent(_text("user_agent", value)))


# --------------------------------------------------------------------------
# convert or keep


@register_filter("try")
def try_filter(value: Any, name: Any, *args: Any) -> Any:
    """Apply the built-in filter ``name`` (with its arguments); keep the value as it is when that filter cannot convert it.

    Example: "soon" | try("epoch_ms") -> "soon"
    """
    if name not in BUILTIN_FILTERS or name == "try":
        raise FilterError(f"try expects the name of a built-in filter, got {_show(name)}")
    return tried(name)(value, *args)


@functools.cache
def tried(name: str) -> Callable[..., Any]:
    """``try(name)`` as one function of the value (and the filter's arguments), for a built-in filter's name:
    what try_filter calls, and what generated code calls when the mapping writes the name."""
    fn, from_text = FILTERS[name], _FROM_TEXT.get(name)

    def attempt(value: Any, *args: Any) -> Any:
        if from_text is not None and value.__class__ is str and not args:  # a date on text: no exception to catch
            parsed = _iso_or_none(value) if _MAY_BE_ISO(value) else None
            return value if parsed is None else from_text(parsed)
        try:
            return fn(value, *args)
        except TooLarge:
            raise
        except FilterError:
            return _plain(value)
    # text this C-level test turns away is kept as it is (without arguments): generated code asks it first
    attempt.converts_text = _MAY_BE_ISO if from_text is not None else None  # type: ignore[attr-defined]
    return attempt


# --------------------------------------------------------------------------
# derived ids


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # ULID's alphabet: Crockford's base32 (https://github.com/ulid/spec)
# every 10 bits as their two characters: a ULID's 130 bits (26 characters) in 13 look-ups
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = range(120, -1, -10)


@register_filter("ulid")
@_missing_stays_missing
def ulid(value: Any, time: Any = None) -> str:
    """A ULID derived from the value and a time, the same every time (deterministic, not random): the time (ISO-8601 or epoch milliseconds) is its 48-bit time part and the first 80 bits of the SHA-256 of the value its "randomness"; a vendor that takes a ULID as its deduplication id (Customer.io's event id) sees a redelivery as the same event.

    Example: "ajs-next-1" | ulid("2024-05-14T09:20:00.123Z") -> "01HXV6DKKVF8P7F5263Z4725W1"
    """
    if time is None:
        raise FilterError("ulid needs a time for its time part, e.g. ulid(event.timestamp); the time was missing")
    moment = _as_datetime("ulid", time)
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if ms < 0:  # a ULID's time part counts milliseconds from 1970 (its 48 bits outlast the dates Python reads)
        raise FilterError(f"ulid's time {_show(time)} is before 1970, outside what a ULID can hold")
    text = str(value) if _is_number(value) else _text("ulid", value)
    number = (ms << 80) | int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:10], "big")
    return "".join([_CROCKFORD_PAIRS[(number >> shift) & 1023] for shift in _PAIR_SHIFTS])


# The filters shipped here are pure functions of their input: a template using only
# these and settings can be rendered once per route (map/codegen.py). A user's may not be.
BUILTIN_FILTERS = frozenset(FILTERS)
