"""``eventmap replay``: archived events sent again through today's mappings and routes (engine/replay.py).

    eventmap replay --config F --since T [--until T] [--source S] [--destination D ...] [--where EXPR] [--dry-run]
    eventmap replay --config F --resume ID | --abandon ID | --list

Stdout: one JSON line per event and destination with ``--dry-run`` (what would be sent, secrets masked,
and what would be rejected), else one JSON line with the replay's record at the end. Stderr: the
progress bar (on a terminal), the notices and the summary per destination. Exit 0 when every event
was replayed or skipped, 2 when some were rejected, 3 when another process took the replay over, 130
when stopped with Ctrl-C (resumable).
"""
from __future__ import annotations

import json
import sys
import time

from ..deliver import new_owner
from ..durations import describe_seconds, describe_time, parse_since
from ..replay import Replayer, ReplayTaken, Selection, abandon, stop, unfinished
from ..states import REPLAY_DONE, REPLAYED, SKIPPED
from . import EXIT_FAILED, EXIT_OK, EXIT_REJECTED
from .common import Progress, UsageError, engine_and_routes, print_table, read_config, store_for


def cmd_replay(args) -> int:
    config = read_config(args.config)
    with store_for(args, config) as store:
        if args.list:
            for replay in store.replays(limit=50):
                print(json.dumps(_record(replay), ensure_ascii=False))
            return 0
        if args.abandon is not None:
            return _abandon(store, args.abandon)
        if args.resume is not None and (args.since or args.until or args.source or args.destination or args.where):
            raise UsageError("--resume takes the range and filters recorded with the replay: give none of --since, "
                             "--until, --source, --destination, --where")
        if args.resume is None and not args.since:
            raise UsageError("replay needs --since (or --resume ID, --abandon ID, --list)")
        if args.resume is not None and args.dry_run:
            raise UsageError("--dry-run shows a new replay, not a recorded one: give --since and the filters instead")
        engine, routes = engine_and_routes(args, config)
        return _replay(args, config, engine, routes, store)


def _replay(args, config, engine, routes, store) -> int:
    owner, now = new_owner(), time.time()
    if args.resume is not None:
        replay = store.take_replay(args.resume, owner, now)
        if replay is None:
            raise UsageError(f"no unfinished replay {args.resume} in the store ('eventmap replay --list' shows them)")
        replayer = Replayer(engine, routes, store, Selection.of(replay), plans=config.plans)
        _say(f"resuming replay {replay.id} at {replay.share:.0%} ({_describe(replay)})")
    else:
        replayer = Replayer(engine, routes, store, _selection(args, now), plans=config.plans)
        if args.dry_run:
            return _dry_run(replayer)
        replay = _start_or_resume(store, replayer, owner, now)
        if replay is None:
            _say(f"no archived events from {_range(replayer.selection)}: nothing to replay")
            return 0
    _say(f"replay {replay.id}: new deliveries with fresh ids through today's mappings; the dedupe window "
         f"({describe_seconds(config.delivery.dedupe_window)}) is bypassed on purpose, so destinations get these "
         f"events again")
    progress = _progress(replay)
    try:
        replay = replayer.run(replay, on_step=lambda r: progress.update(r.events, _totals(r.counts)))
    except KeyboardInterrupt:
        progress.close()
        stop(store, replay, time.time())
        _say(f"replay {replay.id} stopped at {replay.share:.0%}; every chunk written stays written: "
             f"'eventmap replay --resume {replay.id}' goes on from there")
        return 130
    except ReplayTaken as exc:
        progress.close()
        _say(str(exc))
        return EXIT_FAILED
    progress.close()
    _summary(replay)
    print(json.dumps(_record(replay), ensure_ascii=False))
    return _exit_code(replay)


def _selection(args, now: float):
    times = {}
    for option, text in (("--since", args.since), ("--until", args.until or "now")):
        try:
            times[option] = parse_since(text, now)
        except ValueError as exc:
            raise UsageError(f"{option}: {exc}") from None
    if times["--since"] >= times["--until"]:
        raise UsageError(f"--since must be before --until ({args.since} is not before {args.until or 'now'})")
    return Selection(times["--since"], times["--until"], args.source,
                     tuple(args.destination) if args.destination else None, args.where)


def _start_or_resume(store, replayer, owner: str, now: float):
    """The same command as an unfinished replay resumes it; one overlapping it with the same filters is refused
    (it would send some events twice); else a new replay over the range's archived events, or None if none."""
    for replay in unfinished(store, replayer.selection):
        if Selection.of(replay) == replayer.selection:
            _say(f"replay {replay.id} of the same range and filters is unfinished ({replay.state} at "
                 f"{replay.share:.0%}, last written {_ago(replay.updated_at, now)}): resuming it")
            taken = store.take_replay(replay.id, owner, now)
            if taken is not None:
                return taken
    clashing = unfinished(store, replayer.selection)
    if clashing:
        shown = "; ".join(f"replay {r.id} ({_describe(r)}, {r.state} at {r.share:.0%})" for r in clashing)
        first = clashing[0].id
        raise UsageError(f"an unfinished replay with the same filters overlaps this range, so some events would be "
                         f"sent twice: {shown}. Finish it with 'eventmap replay --resume {first}', or give it up with "
                         f"'eventmap replay --abandon {first}'")
    bounds = replayer.bounds()
    if bounds is None:
        return None
    done = [r for r in store.replays(limit=1000) if r.state == REPLAY_DONE and Selection.of(r) == replayer.selection]
    if done:
        _say(f"replay {done[0].id} of the same range and filters is done already: this is a new replay, which "
             f"sends these events again")
    return store.start_replay(replayer.new(bounds, owner), now)


def _dry_run(replayer) -> int:
    def show(item, verdict) -> None:
        if verdict.status == SKIPPED:
            return
        line: dict = {"archived": item.id, "messageId": item.message_id, "destination": verdict.destination,
                      "status": verdict.status}
        if verdict.status == REPLAYED and verdict.outcome is not None:
            line["requests"] = [r.to_dict() for r in verdict.outcome.requests]   # secrets masked
        else:
            line.update(reason=verdict.reason, errors=verdict.errors)
        print(json.dumps(line, ensure_ascii=False))

    replay = replayer.new(replayer.bounds(), owner=None)
    progress = _progress(replay)
    replayer.dry_run(replay, show, on_step=lambda r: progress.update(r.events, _totals(r.counts)))
    progress.close()
    _summary(replay, dry_run=True)
    return _exit_code(replay)


def _abandon(store, replay_id: int) -> int:
    if not abandon(store, replay_id, time.time()):
        raise UsageError(f"no unfinished replay {replay_id} in the store ('eventmap replay --list' shows them)")
    _say(f"replay {replay_id} abandoned: it will not be resumed; what it enqueued stays queued")
    return 0


# --------------------------------------------------------------------------- output

def _progress(replay):
    return Progress(sys.stderr, done=lambda: replay.share, label="eventmap replay", unit="event",
                    keys=("replayed", "skipped", "rejected"))


def _totals(counts: dict) -> dict:
    totals: dict = {}
    for per in counts.values():
        for key in ("replayed", "skipped", "rejected"):
            totals[key] = totals.get(key, 0) + per.get(key, 0)
    return totals


def _summary(replay, dry_run: bool = False) -> None:
    """Per destination: replayed, skipped and rejected, with the most frequent reasons."""
    what = "dry run (nothing written)" if dry_run else f"replay {replay.id} {replay.state}"
    matched = f", {replay.matched:,} matching --where" if replay.where else ""
    _say(f"{what}: {replay.events:,} archived events from {_range(replay)}{matched}")
    if not replay.counts:
        return
    verb = "would be replayed" if dry_run else "replayed"
    rows = [["destination", verb, "skipped", "rejected"]]
    rows += [[name, *(f"{per.get(k, 0):,}" for k in ("replayed", "skipped", "rejected"))]
             for name, per in sorted(replay.counts.items())]
    print_table(rows, stream=sys.stderr)
    for name, per in sorted(replay.counts.items()):
        for reason, n in sorted(per.get("reasons", {}).items(), key=lambda kv: -kv[1])[:3]:
            print(f"  {name}: {n:,} × {reason}", file=sys.stderr)


def _record(replay) -> dict:
    return {"replay": replay.id, "state": replay.state, "since": describe_time(replay.since),
            "until": describe_time(replay.until), "source": replay.source, "destinations": replay.destinations,
            "where": replay.where, "progress": round(replay.share, 4), "events": replay.events,
            "matched": replay.matched, "counts": replay.counts, "owner": replay.owner,
            "updated": describe_time(replay.updated_at) if replay.updated_at else None}


def _describe(replay) -> str:
    filters = [f"source {replay.source}"] if replay.source else []
    if replay.destinations:
        filters.append("to " + ", ".join(replay.destinations))
    if replay.where:
        filters.append(f"where {replay.where}")
    return _range(replay) + (f", {'; '.join(filters)}" if filters else "")


def _range(selection) -> str:
    return f"{describe_time(selection.since)} to {describe_time(selection.until)}"


def _ago(then: float, now: float) -> str:
    return f"{describe_seconds(round(max(0.0, now - then)))} ago"


def _exit_code(replay) -> int:
    return EXIT_REJECTED if any(per.get("rejected") for per in replay.counts.values()) else EXIT_OK


def _say(text: str) -> None:
    print(f"eventmap replay: {text}", file=sys.stderr)
