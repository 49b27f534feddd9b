"""Durations ("30s", "4h", "7d") and rates ("150/s", "5000/day") as people write them in YAML, and times
("2024-05-01", "24h" ago) as they write them on a command line."""
from __future__ import annotations

import re
from datetime import UTC, datetime

UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
# what a person may write, in every message about one (schemas/config.schema.json's $defs titles say the same)
DURATION_FORMS = "a duration such as 30s, 5m, 4h or 7d"
RATE_FORMS = "a rate such as 150/s, 200/min or 5000/day"


def parse_duration(value) -> float:
    """Seconds; a bare number is seconds. Raises ValueError with what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_FORMS}, not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return float(value)
    match = DURATION.match(str(value).lower())
    if not match or (match.group(2) and match.group(2) not in UNITS):
        raise ValueError(f"expected {DURATION_FORMS}, not {value!r}")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def parse_rate(value) -> float:
    """Requests per second from "150/s", "200/min", "5000/day" or "10/5s"; a bare number is per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = RATE.match(str(value).lower())
    if not match or match.group(3) not in UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"expected {RATE_FORMS}, not {value!r}")
    per = float(match.group(2) or 1) * UNITS[match.group(3)]
    return float(match.group(1)) / per


def describe_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_since(value: str, now: float) -> float:
    """A moment as people write it on a command line: an ISO 8601 date or date-time (UTC unless it says),
    ``now``, or a duration meaning that long before ``now`` (1h, 7d). Raises ValueError with what was expected."""
    text = value.strip()
    if text.lower() == "now":
        return now
    if not text.replace(".", "").isdigit():   # a bare number is neither: 2024 seconds, or the year?
        try:
            return now - parse_duration(text)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" and text else text)
    except ValueError:
        raise ValueError(f"expected a moment such as 2024-05-02, 2024-05-02T09:00:00Z, now, or a duration ago such "
                         f"as 1h or 7d, not {value!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def describe_time(seconds: float) -> str:
    """A time as ``parse_since`` reads it back: ISO 8601, UTC, to the second (or finer when it has a fraction)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")
