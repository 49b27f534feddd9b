"""What the console costs: intake with the event columns it needs, and its queries on a big store.

    git archive $(git merge-base HEAD main) | tar -x -C /tmp/before    # the tree before the console
    python bench/bench_console.py --baseline /tmp/before [--events 100000] [--rounds 7]

1. Intake: ``store.accept`` (500 events a call, four deliveries each, SQLite at
   synchronous=NORMAL so the CPU cost is not hidden behind fsync) with this tree's
   store, which also writes type, name and userId beside each body, against the
   store of ``--baseline`` (the tree without them), each in its own process,
   interleaved round by round. Prints events per second, medians, and the ratio.
2. Queries: a SQLite store with ``--events`` events (two deliveries each, an
   attempt per delivery, over the last day) and the console's reads on it, each the
   median of 20 calls, in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ACCEPT = r"""
import json, sys, time, uuid
sys.path.insert(0, sys.argv[1])
from engine.store import NewDelivery, NewEvent, open_store
events, path = int(sys.argv[2]), sys.argv[3]
store = open_store("sqlite:///" + path, synchronous="NORMAL")
batches = [[NewEvent({"type": "track", "event": "Order Completed", "userId": f"u{i % 997}", "messageId": m,
                      "properties": {"order_id": f"o{i}", "revenue": 12.5}}, m,
                     [NewDelivery(d) for d in ("planhat", "crisp", "richpanel", "segment")])
            for i, m in ((i, str(uuid.uuid4())) for i in range(start, min(start + 500, events)))]
           for start in range(0, events, 500)]
started = time.perf_counter()
for batch in batches:
    store.accept(batch, time.time())
print(json.dumps(events / (time.perf_counter() - started)))
"""


def accept_rate(root: Path, events: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", ACCEPT, str(root), str(events), f"{folder}/s.db"],
                              capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout)


def intake(baseline: Path, events: int, rounds: int) -> None:
    ours, theirs = [], []
    for _ in range(rounds):   # interleaved: a slow moment of the machine hits both
        theirs.append(accept_rate(baseline, events))
        ours.append(accept_rate(ROOT, events))
    base, mine = statistics.median(theirs), statistics.median(ours)
    print("| intake (store.accept, SQLite NORMAL) | events/s | ratio |\n| --- | ---: | ---: |")
    print(f"| baseline ({baseline}) | {base:,.0f} | 1.00 |")
    print(f"| this tree (type, name, userId columns) | {mine:,.0f} | {mine / base:.2f} |\n")


def queries(events: int) -> None:
    sys.path.insert(0, str(ROOT))
    from engine.store import (
        DELIVERED,
        REJECTED,
        SKIPPED,
        Attempt,
        EventQuery,
        Finish,
        NewDelivery,
        NewEvent,
        open_store,
    )
    now = time.time()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/big.db", synchronous="NORMAL")
        for start in range(0, events, 1000):
            at = now - 86400 + 86400 * start / events
            store.accept([NewEvent({"type": "track" if i % 3 else "identify", "event": f"Event {i % 50}",
                                    "userId": f"u{i % 5000}", "messageId": f"m{i}"}, f"m{i}",
                                   [NewDelivery("planhat"), NewDelivery("crisp", SKIPPED, "not subscribed")])
                          for i in range(start, min(start + 1000, events))], at)
            leased = store.lease("planhat", 1000, "w", at, 60)
            store.finish([Finish(item.id, DELIVERED if item.id % 10 else REJECTED, Attempt(at, 200, None))
                          for item in leased], "w", at)
        reads = {
            "latest 100 events with deliveries": lambda: store.events(EventQuery(limit=100)),
            "events of one userId": lambda: store.events(EventQuery(user_id="u4242", limit=100)),
            "event by messageId": lambda: store.events(EventQuery(message_id=f"m{events // 2}", limit=100)),
            "events of one type": lambda: store.events(EventQuery(type="identify", limit=100)),
            "events of one name": lambda: store.events(EventQuery(name="Event 7", limit=100)),
            "events of a name none has (walks every event)": lambda: store.events(EventQuery(name="nothing", limit=100)),
            "counts per destination and state": lambda: store.counts(now),
            "skip reasons": lambda: store.reasons(SKIPPED),
            "attempts per minute, last hour": lambda: store.timeline(now - 3600, 60),
            "attempts per hour, last day": lambda: store.timeline(now - 86400, 3600),
        }
        print(f"| console read, {events:,} events, {2 * events:,} deliveries (SQLite) | ms (median of 20) |\n"
              f"| --- | ---: |")
        for name, read in reads.items():
            times = []
            for _ in range(20):
                started = time.perf_counter()
                read()
                times.append(time.perf_counter() - started)
            print(f"| {name} | {statistics.median(times) * 1000:,.2f} |")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="the tree before the console (git archive MERGE_BASE | tar -x -C DIR)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--intake-events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    intake(args.baseline, args.intake_events, args.rounds)
    queries(args.events)


if __name__ == "__main__":
    main()
