"""Durations ("30s", "4h", "7d") and rates ("150/s", "5000/day") as people write them in YAML, and times
("2024-05-01", "24h" ago) as they write them on a command line."""
from __future__ import annotations

import re
from datetime import UTC, datetime

UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_duration(value) -> float:
    """Seconds; a bare number is seconds. Raises ValueError with what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 15m, 4h or 7d, not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return float(value)
    match = DURATION.match(str(value).lower())
    if not match or (match.group(2) and match.group(2) not in UNITS):
        raise ValueError(f"expected a duration such as 30s, 15m, 4h or 7d, not {value!r}")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def parse_rate(value) -> float:
    """Requests per second from "150/s", "200/min", "5000/day" or "10/5s"; a bare number is per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = RATE.match(str(value).lower())
    if not match or match.group(3) not in UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"expected a rate such as 150/s, 200/min or 5000/day, not {value!r}")
    per = float(match.group(2) or 1) * UNITS[match.group(3)]
    return float(match.group(1)) / per


def describe_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


TIME_EXAMPLES = "2024-05-01, 2024-05-01T12:00:00Z, now, or a duration ago such as 24h or 7d"


def parse_time(value: str, now: float) -> float:
    """Seconds since the epoch from a time as people write it on a command line: an ISO 8601 date or
    date-time (UTC unless it names an offset), ``now``, or a duration before ``now`` ("24h": a day ago).
    Raises ValueError with what was expected."""
    text = str(value).strip()
    if text.lower() == "now":
        return now
    ago = DURATION.match(text.lower())
    if ago and ago.group(2):   # a unit is required: a bare number could be a date typed without dashes
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"expected a time such as {TIME_EXAMPLES}, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def describe_time(seconds: float) -> str:
    """A time as ``parse_time`` reads it back: ISO 8601, UTC, to the second (or finer when it has a fraction)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")
