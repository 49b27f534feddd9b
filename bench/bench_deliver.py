"""What durable delivery costs: the outbox against sending straight, to a local sink.

Run: python bench/bench_deliver.py [--events 2000] [--rounds 3]

A sink HTTP server runs in a second process on localhost and answers 200 at
once, so the figures measure eventmap, not a vendor. In one run it measures:

  straight        validate, route, render each event and POST it, no storage
                  (the baseline)
  outbox          accept into SQLite, then workers lease, send and record
  outbox NORMAL   the same with synchronous=NORMAL (survives a killed process,
                  not a power cut)
  straight/batch  render, batch into Segment /v1/batch requests and POST
  outbox/batch    the same through the outbox

and prints requests and events per second, medians of --rounds (each round
runs every case once, so the cases interleave), with the ratio of each to its
baseline in the same run.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from engine import Engine
from engine.deliver import DestinationWorker, HttpClient, Runner, drain, new_owner
from engine.intake import Intake
from engine.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import serve_sink  # noqa: E402


def events(n: int, run: str) -> list[dict]:
    return [{"type": "track", "event": "Order Completed", "userId": f"user-{i % 500}",
             "messageId": f"{run}-{i}", "timestamp": "2026-11-23T10:00:00Z",
             "properties": {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR",
                            "products": [{"product_id": "p1", "price": 21.25, "quantity": 2}]}}
            for i in range(n)]


def straight(engine, route, batch: list[dict], batching: bool) -> tuple[float, int]:
    client = HttpClient(timeout=10)
    started = time.perf_counter()
    outcomes = [engine.render_all(e, [route])[0] for e in batch]  # validated and routed, as intake does
    groups = route.destination.batch_groups(outcomes, route.settings, route.secrets, enabled=batching)
    for request, _ in groups:
        assert 200 <= client.send(request).status < 300
    return time.perf_counter() - started, len(groups)


def outbox(engine, route, batch: list[dict], batching: bool, synchronous: str, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}", synchronous=synchronous)
        route.limits = route.limits.__class__(concurrency=threads, rate=None, batch=batching)
        intake = Intake(engine, [route], store, dedupe_window=0)
        stop = threading.Event()
        worker = DestinationWorker(route, store, HttpClient(timeout=10), owner=new_owner(), stop=stop)
        started = time.perf_counter()
        for start in range(0, len(batch), 500):  # a collector accepts batches of events
            intake.accept(batch[start:start + 500])
        if threads == 1:
            drain([worker], store)
        else:
            runner = Runner([worker], store, threads={worker.name: threads}, owner=worker.owner, stop=stop,
                            idle_wait=0.01)
            runner.start()
            while store.next_due([worker.name], time.time()) is not None:
                time.sleep(0.005)
            stop.set()
            runner.join()
        elapsed = time.perf_counter() - started
        counts = store.counts(time.time())[worker.name]
        assert counts.get("delivered") == len(batch), counts
        store.close()
        return elapsed, worker.stats.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    ports = multiprocessing.Queue()
    sink = multiprocessing.Process(target=serve_sink, args=(ports,), daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    engine = Engine()
    route = engine.route("segment", {"write_key": "bench-key", "base_url": url})

    cases = [
        ("straight, one request per event", lambda b: straight(engine, route, b, False), None),
        ("outbox FULL, 1 thread", lambda b: outbox(engine, route, b, False, "FULL", 1), 0),
        ("outbox NORMAL, 1 thread", lambda b: outbox(engine, route, b, False, "NORMAL", 1), 0),
        ("outbox FULL, 4 threads", lambda b: outbox(engine, route, b, False, "FULL", 4), 0),
        ("straight, /v1/batch", lambda b: straight(engine, route, b, True), None),
        ("outbox FULL, /v1/batch", lambda b: outbox(engine, route, b, True, "FULL", 1), 4),
    ]
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
    for round_ in range(args.rounds):  # rounds interleave the cases, so a busy spell hits all of them alike
        for name, run, _ in cases:
            elapsed, requests = run(events(args.events, f"{name}-{round_}"))
            rates[name].append((args.events / elapsed, requests / elapsed))
    results = [(name, statistics.median(r[0] for r in rates[name]), statistics.median(r[1] for r in rates[name]))
               for name, _, _ in cases]
    sink.terminate()

    print(f"{args.events} Segment track events to a local sink, median of {args.rounds} rounds\n")
    print(f"{'case':<34} {'events/s':>10} {'requests/s':>11} {'vs baseline':>12}")
    for index, (name, per_event, per_request) in enumerate(results):
        baseline = results[cases[index][2]][1] if cases[index][2] is not None else per_event
        print(f"{name:<34} {per_event:>10,.0f} {per_request:>11,.0f} {per_event / baseline:>11.2f}x")
    print("\nbaselines: 'straight, one request per event' for the unbatched rows, 'straight, /v1/batch' for the last")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
