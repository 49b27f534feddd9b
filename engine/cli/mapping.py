"""The mapping commands: ``validate``, ``render``, ``explain``, ``batch`` and ``source``
(their options are in parser.py).

Output is for people and scripts alike: JSON on stdout (a short summary instead
when ``batch`` writes to a terminal), ``file:line: path: message`` on stderr.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import jsonschema_rs

from ..engine import Engine, load_mappings
from ..explain import explain
from ..load.config import find_mappings
from ..paths import SCHEMA_DIR
from ..problems import Problem
from ..source import FAILED
from ..states import OUTCOME_STATUSES, REJECTED
from . import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_REJECTED
from .common import (
    JsonLines,
    Progress,
    UsageError,
    engine_and_routes,
    is_terminal,
    make_engine,
    print_json,
    print_table,
    read_event,
    read_lines,
    read_settings,
)

FIRST_REJECTIONS = 5   # how many rejections the terminal summary of batch quotes


# The delivery package (requests, the runner: a third of the start-up time) is imported only by what sends or
# reads saved answers, so validate and render start quickly (bench/bench_cli_start.py).

def saved_responses(args):
    if not args.responses:
        return None
    from ..deliver.http import SavedResponses
    return SavedResponses(args.responses)


# --------------------------------------------------------------------------- commands

def cmd_validate(args) -> int:
    if args.path and args.mappings and args.path != args.mappings:
        raise UsageError(f"validate: two folders given ({args.path} and --mappings {args.mappings}): give one")
    args.mappings_folder = find_mappings(args.mappings or args.path)
    destinations, sources, problems = validate_all(args.mappings_folder.path)
    problems += plan_problems(args.plan, args.config)
    for problem in sorted(problems, key=lambda p: (p.file or "", p.line or 0)):   # each file's, in line order
        print(str(problem), file=sys.stderr)
    if any(p.severity == "error" for p in problems):
        return EXIT_CONFIG
    print(f"ok: {len(destinations)} destinations ({', '.join(sorted(destinations))}), "
          f"{len(sources)} sources ({', '.join(sorted(sources)) or 'none'})"
          + "".join(f"; {what}" for what in [*(f"plan {plan}" for plan in args.plan),
                                              *([f"configuration {args.config}"] if args.config else [])]))
    return EXIT_OK


def plan_problems(plans: list[Path], config: Path | None) -> list[Problem]:
    """Every problem in these tracking plan files, and in the configuration (with the plans it names)."""
    if not plans and config is None:
        return []   # plans compile with jsonschema: nothing of it is imported when no plan is asked for
    from ..load.config import load_config
    from ..load.plan import load_plan
    problems = []
    for plan in plans:
        problems += load_plan(plan)[1]
    if config is not None:
        problems += load_config(config)[1]
    return problems


def validate_all(root: Path) -> tuple[dict, dict, list[Problem]]:
    """The destinations and sources that load, and every problem: the shipped schemas' and every file's."""
    problems = []
    for schema_file in sorted(SCHEMA_DIR.glob("*.schema.json")):
        try:
            jsonschema_rs.meta.validate(json.loads(schema_file.read_text(encoding="utf-8")))
        except ValueError as exc:  # a broken shipped schema must be reported, not crash (JSON's errors too)
            problems.append(Problem("", f"invalid JSON Schema: {str(exc).splitlines()[0]}", str(schema_file)))
    destinations, sources, found = load_mappings(root)
    return destinations, sources, problems + found


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
    from ..deliver.http import HttpClient, SavedResponses
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
    from ..deliver.http import deliver
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


