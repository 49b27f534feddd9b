"""How eventmap's processes log: plain lines for people, or one JSON object a line for log pipelines.

The configuration file chooses (``logging: {format: json, level: info, every: 60s}``);
``eventmap serve``, ``eventmap deliver`` and the server's background process all
call ``configure`` with it. ``every`` is how often the delivery runner writes its
per-destination line. Messages never carry secrets: what they quote (vendor
answers, transport errors) is masked before it gets here, and a request path
only as ``secrets.masked_path`` shows it.

Messages quote what others chose (an event's messageId, a vendor's answer), so
the text format escapes control characters as the JSON format does: a newline in
a messageId cannot start a line that passes for a record of its own, nor an
escape sequence steer a terminal. A traceback keeps its lines, each indented.
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

# C0 and C1 control characters, DEL, and Unicode's line and paragraph separators: whatever may end a line
# or drive a terminal, written as JSON writes them
_CONTROLS = {code: f"\\u{code:04x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}
_ESCAPES = str.maketrans({**_CONTROLS, ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})

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


def escaped(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\n``, ``\\u001b``), everything else as it is."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """A line for people, its message escaped (``escaped``). A traceback keeps its lines, each indented
    and escaped, so none of them can pass for a record either."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        blocks = [self.formatException(record.exc_info)] if record.exc_info else []
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            line += "".join(f"\n  {escaped(text)}" for text in block.splitlines())
        return line


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
        handler.setFormatter(TextFormatter(PLAIN_FORMAT if plain else TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level.upper())
