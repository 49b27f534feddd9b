"""What the command modules share: engines, configurations, stores, reading input and printing.

A leaf of the CLI package: the command modules import it, it imports none of them.
Imported only when a command runs (parser.py and options.py are what every start needs).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .. import jsoncodec
from ..engine import Engine
from ..load.config import Config, find_mappings, load_config, routes_from_config
from ..problems import ConfigError, EventmapError, Problem
from ..states import OUTCOME_STATUSES

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("eventmap.cli")


class UsageError(EventmapError):
    """The command line asks for something that cannot be done; printed as one ``eventmap: ...`` line."""


# --------------------------------------------------------------------------- engines, configurations, stores

def make_engine(args, config: Config | None = None) -> Engine:
    """The engine of the folder find_mappings chooses (--mappings, the configuration's mappings:,
    ./mappings, the shipped ones). ``args.mappings_folder`` keeps the choice, so that an unknown
    destination can be reported with the folder searched (engine/cli/__init__.py)."""
    args.mappings_folder = find_mappings(getattr(args, "mappings", None), config.mappings if config else None,
                                         config.file if config else None)
    # a command about one destination (render, explain, batch DEST) reads that destination's file alone
    return Engine(args.mappings_folder.path, only=getattr(args, "destination", None) if config is None else None)


def read_config(path: Path) -> Config:
    config, problems = load_config(path)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def optional_config(path: Path | None) -> Config | None:
    return None if path is None else read_config(path)


def engine_and_routes(args, config: Config | None = None):
    """A routes file may name its own mappings folder (relative to the file); --mappings still wins.
    Problems with its destinations' settings come at the file's lines."""
    config = config or read_config(args.config)
    engine = make_engine(args, config)
    return engine, routes_from_config(engine, config)


def store_for(args, config: Config | None, *, create: bool = False, upgrade: bool | None = None) -> Store:
    """The store --store or the configuration names (default ./eventmap.db), named on stderr.

    Only the commands that put data in (enqueue, db upgrade) pass ``create``: the others
    refuse a missing SQLite file rather than report an empty store they just made. (The store package is
    imported here, by the commands that open one: render and validate start without it.)
    """
    from ..store import DEFAULT_URL, open_store
    explicit = getattr(args, "store", None)
    url = explicit or (config.storage.url if config else DEFAULT_URL)
    base = config.folder if config and not explicit else Path.cwd()
    options = dict(config.storage.options) if config and not explicit else {}
    store = open_store(url, base=base, upgrade=upgrade, create=create, **options)
    log.info("eventmap: store %s", store.location, extra={"store": store.location})
    return store


# --------------------------------------------------------------------------- input

def read_settings(text: str | None) -> dict:
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        source, name = text, "--settings"
    else:
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"--settings: '{text}' is neither a JSON object nor a file")
        source, name = _read_file(text), text
    data = _json_or_yaml(source, name)
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected an object of settings")
    return data


def _json_or_yaml(text: str, name: str):
    """JSON, or YAML (a superset: ``{api_key: k}`` is fine too). What neither reads is one line: where JSON
    broke, for text that starts as a JSON object (almost certainly meant as JSON), else where YAML broke."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        json_error = exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if text.lstrip().startswith("{"):
            where = f"line {json_error.lineno}, column {json_error.colno}"
            raise UsageError(f"{name}: not valid JSON: {json_error.msg} ({where})") from None
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{name}{line}: not valid JSON or YAML: {getattr(exc, 'problem', None) or exc}") from None


def read_event(name: str):
    text = sys.stdin.read() if name == "-" else _read_file(name)
    try:
        return jsoncodec.loads_bounded(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}:{exc.lineno}: not valid JSON: {exc.msg}") from None


class JsonLines:
    """(line number, event) per non-blank line of a file or stdin, read lazily.

    An unreadable line yields a Problem, never vanishes. For a regular file it
    also knows how far through it is, for a progress bar.
    """

    def __init__(self, name: str):
        self.name = name
        try:
            self.stream = sys.stdin if name == "-" else open(name, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        self.size = None
        if name != "-" and os.path.isfile(name):
            self.size = os.path.getsize(name) or None

    def done(self) -> float | None:
        """The share of the file read so far (to the read-ahead buffer); None for a stream."""
        buffer = getattr(self.stream, "buffer", None)
        if self.size is None or buffer is None:
            return None
        return min(buffer.tell() / self.size, 1.0)

    def __iter__(self):
        with self.stream:
            for number, line in enumerate(self.stream, 1):
                if not line.strip():
                    continue
                try:
                    yield number, jsoncodec.loads_bounded(line)
                except json.JSONDecodeError as exc:
                    yield number, Problem("", f"{self.name}:{number}: not valid JSON: {exc.msg} (column {exc.colno})")


def read_lines(name: str):
    """``JsonLines`` when the caller needs only the lines."""
    return iter(JsonLines(name))


def _read_file(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text (byte {exc.start}); JSON must be UTF-8") from None


# --------------------------------------------------------------------------- output

def print_json(data, indent: int | None = 2) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=indent))


def print_table(rows: list[list[str]], stream=None) -> None:
    """Left-aligned first column, right-aligned numbers, two spaces between; on stdout unless ``stream``."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip(), file=stream)


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A progress bar on stderr, redrawn a few times a second, only when stderr is a terminal.

    With a file it shows how much of it is read and the time left; with a
    stream, the lines so far. Either way, the counts and the rate.
    """

    WIDTH = 24

    def __init__(self, stream, every: float = 0.25, done=lambda: None, label: str = "eventmap batch",
                 keys=OUTCOME_STATUSES, unit: str = "line"):
        self.stream, self.every, self.done, self.label, self.keys = stream, every, done, label, keys
        self.unit = unit   # what ``line`` counts: lines of a file, or events (replay)
        self.active = is_terminal(stream)
        self.started = time.monotonic()
        self.next = self.started + every
        self.shown = False

    def update(self, line: int, counts: dict) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.every
        elapsed = max(now - self.started, 1e-9)
        share = self.done()
        if share is None:
            where = f"{self.unit} {line:,}"
        else:
            filled = int(share * self.WIDTH)
            left = elapsed * (1 - share) / share if share > 0 else 0
            where = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%} {self.unit} {line:,}, {left:,.0f} s left"
        shown = ", ".join(f"{counts.get(key, 0):,} {key}" for key in self.keys)
        self.stream.write(f"\r\033[K{self.label}: {where}: {shown}, {line / elapsed:,.0f} {self.unit}s/s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")  # clear the progress line; the summary follows
