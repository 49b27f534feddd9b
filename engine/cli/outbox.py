"""The outbox commands: ``enqueue``, ``deliver``, ``deliveries`` and ``db`` (their options are in parser.py).

They all work on the store named by the configuration file (``storage:``),
or ``--store URL``; the default is ``sqlite:///eventmap.db`` next to the
configuration file, or in the current folder without one. Each names the store
it opened on stderr; only ``enqueue`` and ``db upgrade`` create one.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime

from ..deliver import DryRunClient, Runner, destination_workers, drain, new_owner, progress_line
from ..intake import Intake
from ..load.config import Config
from ..logs import configure
from ..problems import ConfigError, Problem
from ..secrets import Masker
from ..serve.background import source_workers
from ..serve.config import load_serve_config
from ..serve.inbox import inbox_workers
from ..serve.setup import build
from ..states import DEAD, DELIVERED, DRY_RUN, PENDING, QUEUED, REJECTED, RETRYING, SKIPPED
from ..store import NOT_RECORDED, SentRequest
from . import EXIT_CONFIG, EXIT_OK, EXIT_REJECTED
from .common import JsonLines, Progress, engine_and_routes, optional_config, print_table, read_config, store_for

ENQUEUE_CHUNK = 500
log = logging.getLogger("eventmap.cli")
# the columns of 'eventmap deliveries counts', in the order a delivery moves through them
COUNT_COLUMNS = (QUEUED, RETRYING, "in_flight", DELIVERED, DRY_RUN, SKIPPED, REJECTED, DEAD)


def webhook_workers(args, config: Config, engine, routes, store, owner: str) -> list:
    """Webhook payloads a server stored (``sources:`` with ``webhook:``) are mapped here too, so
    ``eventmap serve --intake-only`` plus ``eventmap deliver`` on other hosts does the whole job."""
    if not any("webhook" in spec for spec in (config.data.get("sources") or {}).values()):
        return []
    setup = build(load_serve_config(args.config), engine.root)
    intake = Intake(engine, routes, store, dedupe_window=config.delivery.dedupe_window, plans=config.plans)
    return source_workers(setup, store, intake, owner)


# --------------------------------------------------------------------------- commands

def cmd_enqueue(args) -> int:
    from .plans import enqueue_source
    config = read_config(args.config)
    engine, routes = engine_and_routes(args, config)
    source = enqueue_source(config, args.source)
    totals = {"events": 0, "rejected": 0, "unreadable": 0, "queued": 0, "skipped": 0, "broke the plan": 0}
    with store_for(args, config, create=True) as store:
        intake = Intake(engine, routes, store, dedupe_window=config.delivery.dedupe_window, plans=config.plans)
        chunk: list[tuple[int, object]] = []

        def flush():
            for (number, _), receipt in zip(chunk, intake.accept([event for _, event in chunk], source)):
                totals["events"] += 1
                totals["rejected"] += receipt.rejected
                totals["broke the plan"] += bool(receipt.violations)
                for state in receipt.states().values():
                    if state in (QUEUED, SKIPPED):
                        totals[state] += 1
                if args.verbose or receipt.rejected or receipt.violations:
                    line: dict[str, object] = {"line": number, "messageId": receipt.message_id,
                                               "deliveries": receipt.states()}
                    if receipt.rejected:
                        line["errors"] = [e.as_dict() for e in receipt.errors]
                    if receipt.violations:
                        line["violations"] = [{"path": v.path, "rule": v.rule, "message": v.message,
                                               "action": v.action} for v in receipt.violations]
                    print(json.dumps(line, ensure_ascii=False))
            chunk.clear()

        lines = JsonLines(args.events)
        progress = Progress(sys.stderr, done=lines.done, label="eventmap enqueue",
                            keys=("queued", "skipped", "rejected", "unreadable"))
        for number, event in lines:
            if isinstance(event, Problem):  # not JSON: nothing to keep, so say so loudly
                totals["unreadable"] += 1
                print(json.dumps({"line": number, "errors": [event.as_dict()]}, ensure_ascii=False))
                continue
            chunk.append((number, event))
            if len(chunk) >= ENQUEUE_CHUNK:
                flush()
                progress.update(number, totals)
        flush()
        progress.close()
    print(f"eventmap enqueue: {totals['events'] - totals['rejected']} events accepted ({totals['queued']} deliveries "
          f"queued, {totals['skipped']} skipped), {totals['rejected']} rejected (kept under '(intake)'), "
          f"{totals['unreadable']} unreadable lines" + (f"; {totals['broke the plan']} broke the tracking plan of "
                                                         f"source '{source}' (eventmap violations)"
                                                         if totals["broke the plan"] else ""), file=sys.stderr)
    return EXIT_REJECTED if totals["rejected"] or totals["unreadable"] else EXIT_OK


def cmd_deliver(args) -> int:
    config = read_config(args.config)
    engine, routes = engine_and_routes(args, config)
    configure(config.logging)
    every = config.logging.every if args.progress is None else args.progress
    stop = threading.Event()
    owner = new_owner()
    client = DryRunClient() if args.dry_run else None
    secrets = frozenset(s for route in routes for s in route.secrets)
    with store_for(args, config) as store:
        # requests a server kept whole (server.intake: queue) become events here too, first, so --until-idle
        # finishes them
        workers = inbox_workers(Intake(engine, routes, store, dedupe_window=config.delivery.dedupe_window,
                                       plans=config.plans), store,
                                (config.data.get("server") or {}).get("intake"), lease_for=config.delivery.lease,
                                owner=owner)
        workers += destination_workers(routes, store, config.delivery, owner=owner, stop=stop, client=client)
        workers += webhook_workers(args, config, engine, routes, store, owner)
        if not workers:
            raise ConfigError([Problem("destinations", "no enabled destination to deliver to", config.file)])
        if args.until_idle:
            drain(workers, store)
            log.info("eventmap deliver: %s", progress_line(workers, store, time.time()))
            return 0
        runner = Runner(workers, store, threads={w.name: w.route.limits.concurrency for w in workers
                                                 if hasattr(w, "route")}, owner=owner,
                        stop=stop, keep_done_for=config.delivery.keep_done_for, masker=Masker(secrets),
                        archive_for=config.delivery.archive_for,
                        report_every=every if every > 0 else None, idle_wait=config.delivery.poll,
                        batch_wait=config.delivery.batch_wait)
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            runner.start()
            log.info("eventmap deliver: %d destinations (%s); SIGTERM or Ctrl-C stops after the requests in flight",
                     len(workers), ", ".join(w.name for w in workers))
            while not stop.wait(3600):   # the signal handlers set it
                pass
        finally:
            stop.set()
            runner.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("eventmap deliver: stopped cleanly. %s", progress_line(workers, store, time.time()))
    return 0


def cmd_counts(args) -> int:
    with store_for(args, optional_config(args.config)) as store:
        counts = store.counts(time.time())
    if not counts:
        print("no deliveries in the store")
        return 0
    print_table([["destination", *COUNT_COLUMNS]] + [[name, *(str(per.get(c, 0)) for c in COUNT_COLUMNS)]
                                                     for name, per in sorted(counts.items())])
    return 0


def cmd_list(args) -> int:
    with store_for(args, optional_config(args.config)) as store:
        for record in store.list(args.destination, args.state, args.limit, args.after):
            print(json.dumps(_record_dict(record), ensure_ascii=False))
    return 0


def cmd_show(args) -> int:
    with store_for(args, optional_config(args.config)) as store:
        record = store.get(args.id)
    if record is None:
        print(f"eventmap: no delivery {args.id} in the store", file=sys.stderr)
        return EXIT_CONFIG
    data = _record_dict(record)
    data["event"] = record.event
    # what went over the wire, as the worker recorded it (secrets masked): the batch it travelled in, if one
    data["sent"] = _sent_dict(record.sent) if record.sent is not None else (NOT_RECORDED if record.tried else None)
    data["request"] = record.request  # a dead letter's own request, masked; secrets never reach the store
    data["attempts_log"] = [{"at": _iso(a.at), **({"step": a.step} if a.step else {}), "status": a.status,
                             "error": a.error, "seconds": round(a.duration, 3),
                             **({"sent_id": a.sent_id} if a.sent_id is not None else {})} for a in record.history]
    if record.progress:  # a multi-step action: the answers of the steps done, which a retry does not repeat
        data["steps_done"] = record.progress
    print(json.dumps(data, ensure_ascii=False, indent=2))
    return 0


def cmd_retry(args) -> int:
    """Ids given: each must be a delivery in the store, and the ones not in ``--state`` are named, since
    nothing is queued for them; either makes the exit status 1."""
    with store_for(args, optional_config(args.config)) as store:
        records = {i: store.get(i) for i in args.ids}
        missing = [str(i) for i, record in records.items() if record is None]
        if missing:
            print(f"eventmap deliveries retry: no delivery {', '.join(missing)} in the store (nothing queued; "
                  "'eventmap deliveries list' shows the ids)", file=sys.stderr)
            return EXIT_CONFIG
        count = store.requeue(time.time(), ids=args.ids or None, destination=args.destination, state=args.state)
    print(f"eventmap deliveries retry: {count} {args.state} deliveries queued again", file=sys.stderr)
    others = [f"{i} is {record.state} ({record.destination})" for i, record in records.items()
              if record is not None and (record.state != args.state
                                         or args.destination not in (None, record.destination))]
    if others:
        print(f"eventmap deliveries retry: not queued: {', '.join(others)} (--state and --destination choose "
              "which are)", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_db_upgrade(args) -> int:
    with store_for(args, optional_config(args.config), create=True, upgrade=True) as store:
        print(f"eventmap db: {store.location} is at schema version {store.version()}", file=sys.stderr)
    return 0


def cmd_db_status(args) -> int:
    with store_for(args, optional_config(args.config), upgrade=False) as store:
        print(f"eventmap db: {store.location} is at schema version {store.version()}")
    return 0


def _record_dict(record) -> dict:
    data = {"id": record.id, "destination": record.destination, "messageId": record.message_id,
            "state": record.state, "attempts": record.attempts, "created": _iso(record.created_at),
            "updated": _iso(record.updated_at)}
    if record.state in PENDING and record.next_at:
        data["next_attempt"] = _iso(record.next_at)
    for key in ("reason", "errors", "last_status", "last_error"):
        value = getattr(record, key)
        if value is not None:
            data[key] = value
    return data


def _sent_dict(sent: SentRequest) -> dict:
    """A recorded sent request: when, how many deliveries it carried (the first few by id), the request."""
    return {"id": sent.id, "at": _iso(sent.at), "events": sent.events, "deliveries": sent.deliveries,
            "request": sent.request}


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
