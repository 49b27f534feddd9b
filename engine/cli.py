"""The ``eventmap`` command. Output is for people and scripts alike: JSON on stdout,
``file:line: path: message`` on stderr, and stable exit codes:
0 sent or skipped, 2 rejected (the event is bad), 1 usage or configuration error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from . import jsoncodec
from .cli_outbox import add_commands as add_outbox_commands
from .deliver import HttpClient, SavedResponses, deliver
from .engine import DEFAULT_MAPPINGS, Engine, load_mappings
from .load.config import load_config, routes_from_config
from .map.language import MappingError, Scope, leaves
from .outcome import REJECTED
from .paths import SCHEMA_DIR
from .problems import ConfigError, Problem
from .secrets import Masker, masked_twin

EXIT_OK, EXIT_CONFIG, EXIT_REJECTED, EXIT_FAILED = 0, 1, 2, 3

DESCRIPTION = """\
eventmap turns Segment-spec events (identify, track, page, screen, group, alias)
into the exact HTTP requests each vendor expects, from YAML mapping files.

  eventmap validate                         check every mapping file
  eventmap render planhat event.json --settings '{"tenant_token": "..."}'
  eventmap explain crisp event.json         which expression made each field
  eventmap batch events.jsonl --config eventmap.yaml
  eventmap source gladly webhook.json --lookups saved/ --to planhat
  eventmap serve --config eventmap.yaml     a Segment-compatible collector

Settings may also come from environment variables EVENTMAP_<DESTINATION>_<SETTING>,
e.g. EVENTMAP_PLANHAT_TENANT_TOKEN. Secrets are masked unless --show-secrets.
"""


class UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"eventmap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventmap", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def mappings_option(p):
        p.add_argument("--mappings", type=Path, default=None, metavar="DIR",
                       help="folder with destinations/ and sources/ (default: ./mappings if present, else the shipped ones)")

    p = commands.add_parser("validate", help="check all mapping files and schemas; print every problem as file:line: path: message")
    p.add_argument("path", nargs="?", type=Path, help="a mappings folder (default: ./mappings or the shipped one)")
    p.set_defaults(run=cmd_validate)

    p = commands.add_parser("render", help="render one event for one destination and print the outcome as JSON")
    p.add_argument("destination", help="file name (planhat) or display name (Planhat)")
    p.add_argument("event", nargs="?", default="-", help="a JSON file with one event, or - for stdin (default)")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    p.add_argument("--show-secrets", action="store_true", help="print credentials instead of ***")
    mappings_option(p)
    p.set_defaults(run=cmd_render)

    p = commands.add_parser("explain", help="show each output field with the expression that produced it and its value",
                            description="eventmap explain DEST EVENT: each output field, its expression and value. "
                                        "eventmap explain --code DEST TYPE: the Python the mapping compiles to.")
    p.add_argument("destination")
    p.add_argument("event", help="a JSON file with one event, or - (with --code: a call type such as track)")
    p.add_argument("--code", action="store_true", help="print the generated Python for the call type given instead of an event")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    mappings_option(p)
    p.set_defaults(run=cmd_explain)

    p = commands.add_parser("batch", help="render JSON Lines events; write one outcome per event and destination per line")
    p.add_argument("events", nargs="?", default="-", help="a JSON Lines file, or - for stdin (default)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--destination", help="one destination (settings from --settings or the environment)")
    target.add_argument("--config", type=Path, help="a routes file naming every configured destination")
    p.add_argument("--settings", help="with --destination: settings as JSON or a file")
    p.add_argument("--show-secrets", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 2 when any event is rejected (default: 0, with a summary on stderr)")
    mappings_option(p)
    p.set_defaults(run=cmd_batch)

    p = commands.add_parser("source", help="turn vendor webhook payloads into Segment events (and optionally route or send them)",
                            description="Map a webhook payload through a source file. Exit 0 events or skipped, "
                                        "2 rejected, 3 a lookup or delivery failed (retry later), 1 configuration error.")
    p.add_argument("source", help="file name (gladly) or display name")
    p.add_argument("payload", nargs="?", default="-", help="a JSON file with one payload, or - for stdin (default)")
    p.add_argument("--jsonl", action="store_true", help="the input is JSON Lines, one payload a line; one result a line out")
    p.add_argument("--lookups", type=Path, metavar="DIR",
                   help="answer lookups from saved responses DIR/<url path>.json instead of calling the vendor")
    p.add_argument("--settings", help="the source's settings as JSON or a file (or EVENTMAP_<SOURCE>_<SETTING>)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per lookup or delivery request (default 10)")
    route = p.add_mutually_exclusive_group()
    route.add_argument("--to", action="append", metavar="DESTINATION",
                       help="also render the events for this destination (repeatable; settings from the environment)")
    route.add_argument("--config", type=Path, help="also render the events for every destination in this routes file")
    p.add_argument("--send", action="store_true", help="deliver the rendered requests (retrying 429 and 5xx)")
    p.add_argument("--show-secrets", action="store_true")
    mappings_option(p)
    p.set_defaults(run=cmd_source)
    add_outbox_commands(commands, mappings_option)

    p = commands.add_parser("serve", help="a Segment-compatible HTTP collector: point a Segment SDK's host here",
                            description="Accept Segment HTTP API calls (/v1/batch, /v1/track, ...) and vendor "
                                        "webhooks (/sources/NAME), store them durably, and deliver them. With no "
                                        "--config: localhost, any write key, ./eventmap.db and a dry-run sink.")
    p.add_argument("--config", type=Path, help="configuration file: sources (write keys, webhooks), destinations, "
                                               "storage, server")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or server.host)")
    p.add_argument("--port", type=int, help="port (default 8088, or server.port; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="server processes (default 2, or server.workers)")
    p.add_argument("--threads", type=int, help="threads per server process (default 4, or server.threads)")
    p.add_argument("--dry-run", action="store_true", help="deliver to the dry-run sink instead of the vendors")
    p.add_argument("--intake-only", action="store_true",
                   help="only accept and store: destinations are then delivered by 'eventmap deliver', "
                        "and webhook payloads wait for a server started without this option")
    mappings_option(p)
    p.set_defaults(run=cmd_serve)
    return parser


# --------------------------------------------------------------------------- commands

def cmd_validate(args) -> int:
    root = args.path or default_mappings()
    problems = validate_all(root)
    for problem in problems:
        print(str(problem), file=sys.stderr)
    if any(p.severity == "error" for p in problems):
        return EXIT_CONFIG
    destinations, sources, _ = load_mappings(root)
    print(f"ok: {len(destinations)} destinations ({', '.join(sorted(destinations))}), "
          f"{len(sources)} sources ({', '.join(sorted(sources)) or 'none'})")
    return EXIT_OK


def validate_all(root: Path) -> list[Problem]:
    problems = []
    for schema_file in sorted(SCHEMA_DIR.glob("*.schema.json")):
        try:
            from jsonschema import Draft202012Validator
            Draft202012Validator.check_schema(json.loads(schema_file.read_text(encoding="utf-8")))
        except (ValueError, Exception) as exc:  # a broken shipped schema must be reported, not crash
            problems.append(Problem("", f"invalid JSON Schema: {str(exc).splitlines()[0]}", str(schema_file)))
    _, _, found = load_mappings(root)
    return problems + found


def cmd_render(args) -> int:
    engine = make_engine(args)
    route = engine.route(args.destination, read_settings(args.settings))
    event = read_event(args.event)
    outcome = engine.render(event, route)
    print_json(outcome.to_dict(args.show_secrets))
    return EXIT_REJECTED if outcome.status == REJECTED else EXIT_OK


def cmd_explain(args) -> int:
    engine = make_engine(args)
    if args.code:
        return print_code(engine, args.destination, args.event)
    route = engine.route(args.destination, read_settings(args.settings))
    event = read_event(args.event)
    outcome = engine.render(event, route)
    if outcome.status != "send":
        print_json(outcome.to_dict())
        return EXIT_REJECTED if outcome.status == REJECTED else EXIT_OK
    action = route.destination.actions[event["type"]]
    # each value is also evaluated with sentinels for the secret settings: what differs was built from a secret
    twin_settings, sentinels = route.destination.sentinel_settings(route.settings)
    lines = explained_values(action, event, route.settings)
    try:
        twins = explained_values(action, event, twin_settings) if sentinels else lines
    except MappingError:  # a sentinel a filter cannot take: search for the secrets' text instead
        twins = None
    width = max(len(p) for p, _, _ in lines)
    for index, (path, how, value) in enumerate(lines):
        value = masked_twin(value, twins[index][2], sentinels) if twins else Masker(route.secrets).data(value)
        shown = json.dumps(value, ensure_ascii=False) if value is not None else "(left out: no value)"
        print(f"{path:<{width}}  {how}\n{'':<{width}}  = {shown}")
    return EXIT_OK


def explained_values(action, event: dict, settings: dict) -> list[tuple[str, str, object]]:
    """(path, expression, value) for each var and each leaf of the body, for ``eventmap explain``."""
    scope = Scope(event, settings, {})
    lines = []
    for name, node in action.vars:
        scope.set_var(name, node.evaluate(scope))
        lines.append((f"vars.{name}", node.describe(), scope.vars[name]))
    for path, node in leaves(action.body):
        try:
            value = node.evaluate(scope)
        except MappingError as exc:
            value = f"<error: {exc.message}>"
        lines.append((".".join(map(str, path)) or "(body)", node.describe(), value))
    return lines


def print_code(engine: Engine, destination: str, call_type: str) -> int:
    """The Python a destination's action compiles to (map/codegen.py), for people reading or debugging it."""
    found = engine.destination(destination)
    action = found.actions.get(call_type)
    if action is None:
        raise UsageError(f"{found.name} has no '{call_type}' action (actions: {', '.join(found.actions)})")
    print(action.compiled(found.envelope, f"{found.name} {call_type}").source(), end="")
    return EXIT_OK


def cmd_batch(args) -> int:
    """One event at a time from a lazy line reader: memory stays flat however long the input is."""
    if args.config:
        engine, routes = engine_and_routes(args)
    else:
        engine = make_engine(args)
        routes = [engine.route(args.destination, read_settings(args.settings))]
    counts = Counter()
    lines = JsonLines(args.events)
    progress = Progress(sys.stderr, done=lines.done)
    for number, event in lines:
        if isinstance(event, Problem):
            outcomes = [{"destination": r.destination.name, "status": REJECTED, "requests": [], "reason": "unreadable line",
                         "errors": [event.as_dict()]} for r in routes]
        else:
            outcomes = [o.to_dict(args.show_secrets) for o in engine.render_all(event, routes)]
        for outcome in outcomes:
            counts[outcome["status"]] += 1
            print_json({"line": number, **outcome}, indent=None)
        progress.update(number, counts)
    progress.close()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("send", "skipped", "rejected"))
    print(f"eventmap batch: {summary}", file=sys.stderr)
    return EXIT_REJECTED if args.strict and counts[REJECTED] else EXIT_OK


class Progress:
    """A progress bar on stderr, redrawn a few times a second, only when stderr is a terminal.

    With a file it shows how much of it is read and the time left; with a
    stream, the lines so far. Either way, the counts and the rate.
    """

    WIDTH = 24

    def __init__(self, stream, every: float = 0.25, done=lambda: None, label: str = "eventmap batch",
                 keys=("send", "skipped", "rejected")):
        self.stream, self.every, self.done, self.label, self.keys = stream, every, done, label, keys
        isatty = getattr(stream, "isatty", None)
        self.active = bool(isatty and isatty())
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
            where = f"line {line:,}"
        else:
            filled = int(share * self.WIDTH)
            left = elapsed * (1 - share) / share if share > 0 else 0
            where = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%} line {line:,}, {left:,.0f} s left"
        shown = ", ".join(f"{counts.get(key, 0):,} {key}" for key in self.keys)
        self.stream.write(f"\r\033[K{self.label}: {where}: {shown}, {line / elapsed:,.0f} lines/s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")  # clear the progress line; the summary follows


def cmd_source(args) -> int:
    engine, routes = engine_and_routes(args) if args.config else (make_engine(args), [])
    if args.to:
        routes = [engine.route(name) for name in args.to]
    source = engine.source(args.source, read_settings(args.settings))
    client = SavedResponses(args.lookups) if args.lookups else HttpClient(timeout=args.timeout)
    if args.send and not routes:
        raise UsageError("--send needs --to or --config: where should the events go?")
    sender = HttpClient(timeout=args.timeout)
    worst = EXIT_OK
    payloads = read_lines(args.payload) if args.jsonl else [(None, read_event(args.payload))]
    for number, payload in payloads:
        if isinstance(payload, Problem):
            line = {"line": number, "source": source.source.name, "status": "rejected", "errors": [payload.as_dict()]}
            worst = max(worst, EXIT_REJECTED)
        else:
            result = source.process(payload, client)
            line = result.to_dict()
            worst = max(worst, {"rejected": EXIT_REJECTED, "failed": EXIT_FAILED}.get(result.status, EXIT_OK))
            if routes and result.events:
                outcomes = [engine.render_all(event, routes) for event in result.events]
                line["outcomes"] = [o.to_dict(args.show_secrets) for per_event in outcomes for o in per_event]
                if args.send:
                    line["deliveries"] = deliveries = send_all(engine, routes, outcomes, sender)
                    if any(not d["delivered"] for d in deliveries):
                        worst = max(worst, EXIT_FAILED)
            if number is not None:
                line = {"line": number, **line}
        print_json(line, indent=None if args.jsonl else 2)
    return worst


def send_all(engine, routes, outcomes_per_event, client) -> list[dict]:
    """Batch each route's sendable outcomes and deliver them; report each request's fate."""
    reports = []
    for index, route in enumerate(routes):
        sendable = [per_event[index] for per_event in outcomes_per_event]
        for request in engine.batch(route, sendable):
            delivery = deliver(client, request)
            reports.append({"destination": request.destination, "url": request.to_dict()["url"],
                            "messageIds": list(request.message_ids), "delivered": delivery.delivered,
                            "attempts": delivery.attempts, "status": delivery.status, "error": delivery.error,
                            "retryable": delivery.retryable})
    return reports


def cmd_serve(args) -> int:
    from .serve.command import serve  # gunicorn is imported only by the command that needs it
    for name in ("port", "workers", "threads"):
        value = getattr(args, name)
        if value is not None and (value < (0 if name == "port" else 1) or value > (65535 if name == "port" else 64)):
            raise UsageError(f"--{name} {value} is out of range")
    return serve(args, default_mappings())


# --------------------------------------------------------------------------- input helpers

def default_mappings() -> Path:
    local = Path("mappings")
    return local if (local / "destinations").is_dir() else DEFAULT_MAPPINGS


def make_engine(args, config_mappings: Path | None = None) -> Engine:
    return Engine(args.mappings or config_mappings or default_mappings())


def engine_and_routes(args):
    """A routes file may name its own mappings folder (relative to the file); --mappings still wins."""
    config, problems = load_config(args.config)
    if problems:
        raise ConfigError(problems)
    engine = make_engine(args, config.mappings)
    return engine, routes_from_config(engine, config)


def read_settings(text: str | None) -> dict:
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        source, name = text, "--settings"
    else:
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"--settings: '{text}' is neither a JSON object nor a file")
        source, name = path.read_text(encoding="utf-8"), text
    try:
        data = yaml.safe_load(source)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise UsageError(f"{name}: not valid JSON or YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected an object of settings")
    return data


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
            self.stream = sys.stdin if name == "-" else open(name, encoding="utf-8", errors="replace")
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


def print_json(data, indent: int | None = 2) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=indent))


if __name__ == "__main__":
    sys.exit(main())
