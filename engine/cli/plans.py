"""The tracking-plan commands: ``violations``, ``plan infer`` and ``plan diff`` (docs/tracking-plans.md).

Plans are enforced at intake (``engine/intake.py``); these commands look at what
that recorded, and help write and keep a plan: infer one from a sample of events,
then see what traffic does that the plan does not describe. The heavy modules are
imported inside the commands, so ``eventmap --help`` does not load them.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import yaml

from ..load.config import Config
from ..problems import Problem
from . import EXIT_CONFIG, EXIT_OK, EXIT_REJECTED
from .common import (
    JsonLines,
    UsageError,
    is_terminal,
    optional_config,
    print_table,
    store_for,
)

STORE_PAGE = 500   # events read from the store at a time: memory stays flat however many there are


# --------------------------------------------------------------------------- enqueue's source

def enqueue_source(config: Config, name: str | None) -> str | None:
    """The source ``eventmap enqueue`` takes its events to come from: ``--source``, or the only SDK source
    when the configuration has tracking plans (a plan must not be skipped for want of a name)."""
    sources = [n for n, spec in (config.data.get("sources") or {}).items() if "write_key" in spec]
    if name is not None:
        if name not in sources:
            raise UsageError(f"--source: no SDK source named {name!r} in {config.file} "
                             f"(SDK sources: {', '.join(sources) or 'none'})")
        return name
    if not config.plans:
        return None
    if len(sources) == 1:
        return sources[0]
    raise UsageError(f"{config.file} gives sources tracking plans: say which source these events come from with "
                     f"--source NAME (one of {', '.join(sources)})")


# --------------------------------------------------------------------------- violations

def cmd_violations(args) -> int:
    from ..store import ViolationQuery
    since = _since(args.since) if args.since else None
    with store_for(args, optional_config(args.config)) as store:
        found = store.violations(ViolationQuery(args.source, args.event, since, args.limit))
    if args.json or not is_terminal(sys.stdout):
        for v in found:
            print(json.dumps({"source": v.source, "event": v.event, "rule": v.rule, "path": v.path,
                              "action": v.action, "count": v.count, "first": _iso(v.first_at),
                              "last": _iso(v.last_at), "message": v.message, "messageId": v.message_id,
                              "example": v.example}, ensure_ascii=False))
        return EXIT_OK
    if not found:
        print("no tracking-plan violations" + (" matching the filters" if args.source or args.event or since else ""))
        return EXIT_OK
    print_table([["event", "rule", "path", "source", "action", "count", "last seen", "message"]] +
                [[v.event, v.rule, v.path, v.source, v.action, str(v.count), _iso(v.last_at), v.message]
                 for v in found])
    return EXIT_OK


# --------------------------------------------------------------------------- plan infer and plan diff

def cmd_infer(args) -> int:
    from ..validate.profile import Profile, plan_of
    if bool(args.events) == bool(args.from_store):
        raise UsageError("plan infer: give a JSON Lines file of events, or --from-store (with --since)")
    profile = Profile()
    unreadable = _read_into(profile, args)
    if not profile.counted:
        print(f"eventmap plan infer: none of the {profile.seen} events is a named track, an identify or a group: "
              f"no plan to write", file=sys.stderr)
        return EXIT_REJECTED
    plan = plan_of(profile, args.name)
    text = (f"# Inferred by 'eventmap plan infer' from {profile.counted} events on {_iso(time.time())}.\n"
            f"# A starting point: read it, tighten it (enum, minimum, additionalProperties: false...), keep it.\n"
            + yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=120))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"eventmap plan infer: {len(plan['events'])} events written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_REJECTED if unreadable else EXIT_OK


def cmd_diff(args) -> int:
    from ..load.plan import load_plan
    from ..validate.profile import Profile, differences
    plan, problems = load_plan(args.plan)
    if plan is None:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        return EXIT_CONFIG
    if bool(args.events) == bool(args.since):
        raise UsageError("plan diff: give --since T (events in the store) or --events FILE")
    args.from_store = not args.events
    profile = Profile()
    _read_into(profile, args)
    found = differences(profile, plan)
    if args.json or not is_terminal(sys.stdout):
        for difference in found:
            print(json.dumps(difference.as_dict(), ensure_ascii=False))
    elif found:
        print_table([["kind", "event", "path", "seen", "detail"]] +
                    [[d.kind, d.event, d.path, str(d.seen), d.detail] for d in found])
    print(f"eventmap plan diff: {profile.seen} events read, {len(found)} differences from {plan.file}",
          file=sys.stderr)
    return EXIT_OK


def _read_into(profile, args) -> int:
    """Add the events of ``args`` (a file, or the store since --since) to ``profile``; how many lines were unreadable."""
    unreadable = 0
    if not args.from_store:
        for _, event in JsonLines(args.events):
            if isinstance(event, Problem):
                print(str(event.message), file=sys.stderr)
                unreadable += 1
                continue
            profile.add(event)
        return unreadable
    since = _since(args.since) if args.since else None
    with store_for(args, optional_config(args.config)) as store:
        for event in stored_events(store, since):
            profile.add(event)
    return unreadable


def stored_events(store, since: float | None) -> Iterator[object]:
    """Every event the store keeps that was received from ``since`` on, newest first, a page at a time."""
    from ..store import EventQuery
    before = None
    while True:
        page = store.events(EventQuery(before_id=before, limit=STORE_PAGE))
        for record in page:
            if since is not None and record.received_at < since:
                return
            yield record.event
        if len(page) < STORE_PAGE:
            return
        before = page[-1].id


def _since(text: str) -> float:
    from ..durations import parse_since
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
