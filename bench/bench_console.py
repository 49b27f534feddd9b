"""What the console costs: intake and delivery with what it keeps, and its queries on a big store, against a
baseline tree measured in the same run.

    git archive $(git merge-base HEAD main) | tar -x -C /tmp/before    # the tree before the change
    python bench/bench_console.py --baseline /tmp/before [--events 100000] [--rounds 5]

1. Intake: ``store.accept`` (500 events a call, four deliveries each, SQLite at synchronous=NORMAL
   so the CPU cost is not hidden behind fsync) with each tree's store, each in its own process,
   interleaved round by round. Prints events per second of the process's CPU time, medians, and the
   ratio (on a shared machine the wall clock of one run varied by 0.6x to 1.7x).
2. Delivery: the deliveries of ``--deliver-events`` Segment tracks leased, rendered, sent to a local
   sink and recorded by a DestinationWorker (SQLite NORMAL), one request per event and in /v1/batch
   requests, each tree in its own process, interleaved. Events per second of the worker process's
   CPU time (a wall clock on a shared machine varies by more than the difference measured). This
   tree keeps each request sent (sent_requests); the ratio is what that costs.
3. Queries: a SQLite store with ``--events`` events (two deliveries each, an attempt per delivery, over
   the last day) made by each tree, and the console's reads on it, each the median of 20 calls, in
   milliseconds; a read the baseline does not have is shown for this tree only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import serve_sink  # noqa: E402

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
started = time.process_time()   # this process's CPU, as for delivery below
for batch in batches:
    store.accept(batch, time.time())
print(json.dumps(events / (time.process_time() - started)))
"""

DELIVER = r"""
import json, sys, time, uuid
sys.path.insert(0, sys.argv[1])
from engine import Engine
from engine.deliver import DestinationWorker, HttpClient, drain
from engine.intake import Intake
from engine.store import open_store
events, path, url, batching = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "batch"
engine = Engine()
route = engine.route("segment", {"write_key": "bench-key-8c1f", "base_url": url})
route.limits = route.limits.__class__(concurrency=1, rate=None, batch=batching)
store = open_store("sqlite:///" + path, synchronous="NORMAL")
intake = Intake(engine, [route], store, dedupe_window=0)
for start in range(0, events, 500):
    intake.accept([{"type": "track", "event": "Order Completed", "userId": f"user-{i % 500}",
                    "messageId": str(uuid.uuid4()), "properties": {"order_id": f"o-{i}", "total": 42.5}}
                   for i in range(start, min(start + 500, events))])
worker = DestinationWorker(route, store, HttpClient(timeout=10), owner="bench")
started = time.process_time()   # this process's CPU: what eventmap spends, not what the shared machine makes it wait
drain([worker], store)
elapsed = time.process_time() - started
assert store.counts(time.time())["segment"].get("delivered") == events
print(json.dumps(events / elapsed))
"""

QUERIES = r"""
import json, statistics, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from engine.store import DELIVERED, REJECTED, SKIPPED, Attempt, EventQuery, Finish, NewDelivery, NewEvent, open_store
import engine.store as api
events = int(sys.argv[2])
sent = getattr(api, "SentRequest", None)
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
        batch = sent.recorded({"method": "POST", "url": "https://api.planhat.com/analytics/bulk/***", "headers": {},
                               "query": {}, "body": [{"externalId": f"u{i}"} for i in range(len(leased))]},
                              len(leased), "planhat") if sent else None
        extra = {"sent": batch} if sent else {}
        store.finish([Finish(item.id, REJECTED if n % 50 == 7 else DELIVERED, Attempt(at, 200, None, **extra))
                      for n, item in enumerate(leased)], "w", at)   # one in 50 rejected: a rare state
    middle = store.events(EventQuery(message_id=f"m{events // 2}", limit=1))[0].deliveries[0].id
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
        "one delivery with its event, attempts and request": lambda: store.get(middle),
    }
    if sent:   # the reads this change adds
        query = EventQuery
        reads.update({
            "events of a destination in a state (delivered)": lambda: store.events(query(destination="planhat",
                                                                                          state=DELIVERED, limit=100)),
            "events of a destination in a rare state (rejected, 1 in 50)": lambda: store.events(
                query(destination="planhat", state=REJECTED, limit=100)),
            "events in a state at any destination (skipped)": lambda: store.events(query(state=SKIPPED, limit=100)),
            "events of a destination, any state": lambda: store.events(query(destination="crisp", limit=100)),
            "events in an hour 12 hours ago": lambda: store.events(query(since=now - 43200, until=now - 39600,
                                                                         limit=100)),
            "events of a destination and state in that hour": lambda: store.events(
                query(destination="planhat", state=DELIVERED, since=now - 43200, until=now - 39600, limit=100)),
            "older page 50 of a destination and state": lambda: store.events(
                query(destination="planhat", state=DELIVERED, before_id=events // 2, limit=100)),
            "dead reasons": lambda: store.reasons("dead"),
            "retrying by last answer": lambda: store.answers("retrying"),
            "attempts per destination per 30 minutes, last day": lambda: store.timelines(now - 86400, 1800),
            "refused requests, last day": lambda: store.refusals(since=now - 86400, limit=1000),
        })
    found = {}
    for name, read in reads.items():
        times = []
        for _ in range(20):
            started = time.perf_counter()
            read()
            times.append(time.perf_counter() - started)
        found[name] = statistics.median(times) * 1000
    store.close()
print(json.dumps(found))
"""


def run(snippet: str, *args: str) -> object:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", snippet, *[a.replace("{folder}", folder) for a in args]],
                              capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def interleaved(baseline: Path, rounds: int, snippet: str, *args: str) -> tuple[float, float]:
    ours, theirs = [], []
    for _ in range(rounds):   # interleaved: a slow moment of the machine hits both
        theirs.append(run(snippet, str(baseline), *args))
        ours.append(run(snippet, str(ROOT), *args))
    return statistics.median(theirs), statistics.median(ours)


def intake(baseline: Path, events: int, rounds: int) -> None:
    base, mine = interleaved(baseline, rounds, ACCEPT, str(events), "{folder}/s.db")
    print("| intake (store.accept, SQLite NORMAL), per CPU second | events/s | ratio |\n| --- | ---: | ---: |")
    print(f"| baseline | {base:,.0f} | 1.00 |")
    print(f"| this tree | {mine:,.0f} | {mine / base:.2f} |\n")


def delivery(baseline: Path, events: int, rounds: int) -> None:
    ports: multiprocessing.Queue = multiprocessing.Queue()
    sink = multiprocessing.Process(target=serve_sink, args=(ports,), daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    print("| delivery to a local sink (SQLite NORMAL, 1 thread), per CPU second | baseline events/s | this tree |"
          " ratio |\n"
          "| --- | ---: | ---: | ---: |")
    for mode, label in (("single", "one request per event"), ("batch", "/v1/batch requests")):
        base, mine = interleaved(baseline, rounds, DELIVER, str(events), "{folder}/d.db", url, mode)
        print(f"| {label} | {base:,.0f} | {mine:,.0f} | {mine / base:.2f} |")
    sink.terminate()
    print()


def queries(baseline: Path, events: int) -> None:
    theirs = run(QUERIES, str(baseline), str(events))
    ours = run(QUERIES, str(ROOT), str(events))
    assert isinstance(theirs, dict) and isinstance(ours, dict)
    print(f"| console read, {events:,} events, {2 * events:,} deliveries (SQLite) | baseline ms | this tree ms |\n"
          f"| --- | ---: | ---: |")
    for name, ms in ours.items():
        before = f"{theirs[name]:,.2f}" if name in theirs else "-"
        print(f"| {name} | {before} | {ms:,.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="the tree before the change (git archive MERGE_BASE | tar -x -C DIR)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--intake-events", type=int, default=20_000)
    parser.add_argument("--deliver-events", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("intake", "delivery", "queries"), action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args()
    parts = args.only or ["intake", "delivery", "queries"]
    if "intake" in parts:
        intake(args.baseline, args.intake_events, args.rounds)
    if "delivery" in parts:
        delivery(args.baseline, args.deliver_events, args.rounds)
    if "queries" in parts:
        queries(args.baseline, args.events)


if __name__ == "__main__":
    main()
