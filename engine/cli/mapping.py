"""The mapping commands: ``validate``, ``render``, ``explain``, ``batch`` and ``source``.

Output is for people and scripts alike: JSON on stdout (a short summary instead
when ``batch`` writes to a terminal), ``file:line: path: message`` on stderr.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from jsonschema import Draft202012Validator, SchemaError

from ..deliver import HttpClient, SavedResponses, deliver
from ..engine import Engine, load_mappings
from ..explain import explain
from ..paths import SCHEMA_DIR
from ..problems import Problem
from ..source import FAILED
from ..states import OUTCOME_STATUSES, REJECTED
from .common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    JsonLines,
    Progress,
    UsageError,
    default_mappings,
    engine_and_routes,
    is_terminal,
    make_engine,
    mappings_option,
    print_json,
    print_table,
    read_event,
    read_lines,
    read_settings,
)

FIRST_REJECTIONS = 5   # how many rejections the terminal summary of batch quotes


def add_commands(commands) -> None:
    p = commands.add_parser("validate", help="check all mapping files and schemas; print every problem as file:line: path: message")
    p.add_argument("path", nargs="?", type=Path, help="a mappings folder (default: ./mappings or the shipped one)")
    p.add_argument("--plan", action="append", type=Path, default=[], metavar="FILE",
                   help="also check this tracking plan file (repeatable)")
    p.add_argument("--config", type=Path, help="also check this configuration file and the tracking plans it names")
    p.set_defaults(run=cmd_validate)

    p = commands.add_parser("render", help="render one event for one destination and print the outcome as JSON")
    p.add_argument("destination", help="file name (planhat) or display name (Planhat)")
    p.add_argument("event", nargs="?", default="-", help="a JSON file with one event, or - for stdin (default)")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    p.add_argument("--show-secrets", action="store_true", help="print credentials instead of ***")
    responses_option(p)
    mappings_option(p)
    p.set_defaults(run=cmd_render)

    p = commands.add_parser("explain", help="show each output field with the expression that produced it and its value",
                            description="eventmap explain DEST EVENT: each output field, its expression and value. "
                                        "eventmap explain --code DEST TYPE: the Python the mapping compiles to.")
    p.add_argument("destination")
    p.add_argument("event", help="a JSON file with one event, or - (with --code: a call type such as track)")
    p.add_argument("--code", action="store_true", help="print the generated Python for the call type given instead of an event")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    responses_option(p)
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
    p.add_argument("--json", action="store_true",
                   help="print the JSON lines even on a terminal (they are printed whenever stdout is not one)")
    responses_option(p)
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


def responses_option(p) -> None:
    p.add_argument("--responses", type=Path, metavar="DIR",
                   help="run every step of multi-step actions against saved answers: DIR/<url path>.json for GET, "
                        "DIR/<url path>.<method>.json otherwise, .<status>.json for another status (default: "
                        "show the requests of the steps sure to run and the plan of the rest)")


def saved_responses(args) -> SavedResponses | None:
    return SavedResponses(args.responses) if args.responses else None


# --------------------------------------------------------------------------- commands

def cmd_validate(args) -> int:
    root = args.path or default_mappings()
    problems = validate_all(root) + plan_problems(args.plan, args.config)
    for problem in problems:
        print(str(problem), file=sys.stderr)
    if any(p.severity == "error" for p in problems):
        return EXIT_CONFIG
    destinations, sources, _ = load_mappings(root)
    print(f"ok: {len(destinations)} destinations ({', '.join(sorted(destinations))}), "
          f"{len(sources)} sources ({', '.join(sorted(sources)) or 'none'})"
          + "".join(f"; {what}" for what in [*(f"plan {plan}" for plan in args.plan),
                                              *([f"configuration {args.config}"] if args.config else [])]))
    return EXIT_OK


def plan_problems(plans: list[Path], config: Path | None) -> list[Problem]:
    """Every problem in these tracking plan files, and in the configuration (with the plans it names)."""
    from ..load.config import load_config
    from ..load.plan import load_plan
    problems = []
    for plan in plans:
        problems += load_plan(plan)[1]
    if config is not None:
        problems += load_config(config)[1]
    return problems


def validate_all(root: Path) -> list[Problem]:
    problems = []
    for schema_file in sorted(SCHEMA_DIR.glob("*.schema.json")):
        try:
            Draft202012Validator.check_schema(json.loads(schema_file.read_text(encoding="utf-8")))
        except (ValueError, SchemaError) as exc:  # a broken shipped schema must be reported, not crash
            problems.append(Problem("", f"invalid JSON Schema: {str(exc).splitlines()[0]}", str(schema_file)))
    _, _, found = load_mappings(root)
    return problems + found


def cmd_render(args) -> int:
    engine = make_engine(args)
    route = engine.route(args.destination, read_settings(args.settings))
    event = read_event(args.event)
    outcome = engine.render(event, route, responses=saved_responses(args))
    print_json(outcome.to_dict(args.show_secrets))
    return EXIT_REJECTED if outcome.status == REJECTED else EXIT_OK


def cmd_explain(args) -> int:
    engine = make_engine(args)
    if args.code:
        return print_code(engine, args.destination, args.event)
    route = engine.route(args.destination, read_settings(args.settings))
    explained = explain(engine, route, read_event(args.event), responses=saved_responses(args))
    if not explained.fields:
        print_json(explained.outcome.to_dict())
        return EXIT_REJECTED if explained.outcome.status == REJECTED else EXIT_OK
    print("\n".join(explained.lines()))
    return EXIT_OK


def print_code(engine: Engine, destination: str, call_type: str) -> int:
    """The Python a destination's action compiles to (map/codegen.py), for people reading or debugging it."""
    found = engine.destination(destination)
    action = found.actions.get(call_type)
    if action is None:
        raise UsageError(f"{found.name} has no '{call_type}' action (actions: {', '.join(found.actions)})")
    if action.steps is not None:
        raise UsageError(f"{found.name} {call_type} has steps, which the interpreter runs: "
                         f"see them with 'eventmap explain {destination} EVENT'")
    print(action.compiled(found.envelope, f"{found.name} {call_type}").source(), end="")
    return EXIT_OK


def cmd_batch(args) -> int:
    """One event at a time from a lazy line reader: memory stays flat however long the input is.

    Piped (or with --json), one JSON line per event and destination for scripts; on a terminal,
    a table a person can read first (counts per destination and status, the first rejections)."""
    if args.config:
        engine, routes = engine_and_routes(args)
    else:
        engine = make_engine(args)
        routes = [engine.route(args.destination, read_settings(args.settings))]
    as_json = args.json or not is_terminal(sys.stdout)
    counts: Counter = Counter()
    per_destination: dict[str, Counter] = {route.destination.name: Counter() for route in routes}
    rejections: list[tuple[int, dict]] = []
    events = 0
    responses = saved_responses(args)
    lines = JsonLines(args.events)
    progress = Progress(sys.stderr, done=lines.done)
    for number, event in lines:
        events += 1
        if isinstance(event, Problem):
            outcomes = [{"destination": r.destination.name, "status": REJECTED, "requests": [], "reason": "unreadable line",
                         "errors": [event.as_dict()]} for r in routes]
        else:
            outcomes = [o.to_dict(args.show_secrets) for o in engine.render_all(event, routes, responses=responses)]
        for outcome in outcomes:
            counts[outcome["status"]] += 1
            per_destination[outcome["destination"]][outcome["status"]] += 1
            if as_json:
                print_json({"line": number, **outcome}, indent=None)
            elif outcome["status"] == REJECTED and len(rejections) < FIRST_REJECTIONS:
                rejections.append((number, outcome))
        progress.update(number, counts)
    progress.close()
    if as_json:
        summary = ", ".join(f"{counts[s]} {s}" for s in OUTCOME_STATUSES)
        print(f"eventmap batch: {summary}", file=sys.stderr)
    else:
        print_batch_summary(events, per_destination, counts, rejections)
    return EXIT_REJECTED if args.strict and counts[REJECTED] else EXIT_OK


def print_batch_summary(events: int, per_destination: dict[str, Counter], counts: Counter,
                        rejections: list[tuple[int, dict]]) -> None:
    """What a person wants first: how many would be sent where, and why the first rejected ones were."""
    print(f"{events} events, {len(per_destination)} destinations:")
    rows = [["destination", *OUTCOME_STATUSES]]
    rows += [[name, *(str(per[s]) for s in OUTCOME_STATUSES)] for name, per in per_destination.items()]
    rows.append(["total", *(str(counts[s]) for s in OUTCOME_STATUSES)])
    print_table(rows)
    if rejections:
        shown = f"the first {len(rejections)}" if counts[REJECTED] > len(rejections) else "every one"
        print(f"\n{counts[REJECTED]} rejected; {shown}:")
        for number, outcome in rejections:
            errors = "; ".join(f"{e['path']}: {e['message']}" if e.get("path") else e["message"]
                               for e in outcome["errors"])
            print(f"  line {number}, {outcome['destination']}: {outcome['reason']}" + (f" ({errors})" if errors else ""))
    print("\nThe requests: add --json, or pipe the output (one JSON line per event and destination).")



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
            line = {"line": number, "source": source.source.name, "status": REJECTED, "errors": [payload.as_dict()]}
            worst = max(worst, EXIT_REJECTED)
        else:
            result = source.process(payload, client)
            line = result.to_dict()
            worst = max(worst, {REJECTED: EXIT_REJECTED, FAILED: EXIT_FAILED}.get(result.status, EXIT_OK))
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


