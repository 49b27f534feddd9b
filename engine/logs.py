"""How eventmap's processes log: plain lines for people, or one JSON object a line for log pipelines.

The configuration file chooses (``logging: {format: json, level: info, every: 60s}``);
``eventmap serve``, ``eventmap deliver`` and the server's background process all
call ``configure`` with it. ``every`` is how often the delivery runner writes its
per-destination line. Messages never carry secrets: what they quote (vendor
answers, transport errors) is masked before it gets here.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

from . import jsoncodec
from .durations import parse_duration

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_FORMAT = "%(message)s"     # a command's own status lines (the store it opened), before any configuration

# attributes every LogRecord has; anything else was passed as ``extra`` and goes into the JSON object
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@dataclass(frozen=True)
class LogOptions:
    format: str = "text"
    level: str = "info"
    every: float = 60.0          # seconds between the delivery runner's per-destination lines


def log_options(config: dict, problem) -> tuple[LogOptions, list]:
    """The ``logging`` section (its shape is checked by the schema); ``problem(path, message)`` locates errors."""
    spec = config.get("logging") or {}
    values: dict = {key: spec[key] for key in ("format", "level") if key in spec}
    problems = []
    if "every" in spec:
        try:
            values["every"] = parse_duration(spec["every"])
        except ValueError as exc:
            problems.append(problem(("logging", "every"), str(exc)))
    return LogOptions(**values), problems


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return jsoncodec.dumps(data)


class _Handler(logging.StreamHandler):
    """Ours, so a second ``configure`` replaces it and leaves other handlers (pytest's, gunicorn's) alone."""


def configure(options: LogOptions = LogOptions(), stream=None, plain: bool = False) -> None:
    """Send eventmap's logs to stderr in the chosen format, replacing what an earlier call set up.

    ``plain``: just the message, as the CLI prints its status lines when no configuration chose a format.
    """
    handler = _Handler(stream if stream is not None else sys.stderr)
    if options.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT if plain else TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level.upper())
