"""Delivery throughput on PostgreSQL against SQLite, with one and with several worker processes.

Run: python bench/bench_store.py [--events 3000] [--workers 4] [--rounds 3]
     [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

A sink HTTP server runs in its own process on localhost and answers 200 at
once, so the figures measure eventmap and its store, not a vendor. For each
backend, in one run (a scratch SQLite file; a scratch PostgreSQL database,
dropped at the end):

  accept              the store's write of accepted events, 500 per call, one
                      delivery each (what a collector does after validating)
  1 worker            one process, one thread: lease, render, POST one
                      Segment track event per request, record the verdict
  N workers           N such processes on the same queue
  N workers, no HTTP  the same with a client that answers 200 without sending:
                      what the store alone allows
  N workers, relaxed  N workers whose verdicts are not flushed to disk at each
                      commit (SQLite synchronous=NORMAL; PostgreSQL
                      synchronous_commit=off for the workers' connections only)

and prints deliveries (or events) per second, medians of --rounds, with
PostgreSQL's rate as a ratio of SQLite's, and each delivery rate as a ratio
of 'SQLite, 1 worker' measured in the same run.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine  # noqa: E402
from engine.deliver import DestinationWorker, HttpClient, Response, drain, new_owner  # noqa: E402
from engine.store import NewDelivery, NewEvent, open_store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import serve_sink  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")  # each worker a fresh process with its own pool, as on another host


class NoSend:
    """Answers 200 without sending: leaves only rendering and the store."""

    def send(self, request) -> Response:
        return Response(200, {})


def track(i: int, run: str) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{i % 500}", "messageId": f"{run}-{i}",
            "timestamp": "2026-11-23T10:00:00Z",
            "properties": {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR"}}


def fill(url: str, n: int, run: str) -> float:
    """Queue ``n`` deliveries to segment; returns the accept rate (events per second)."""
    with open_store(url, upgrade=False) as store:
        batch = [NewEvent(e, e["messageId"], [NewDelivery("segment")]) for e in (track(i, run) for i in range(n))]
        started = time.perf_counter()
        for start in range(0, n, 500):
            store.accept(batch[start:start + 500], time.time(), dedupe_window=86400)
        return n / (time.perf_counter() - started)


def work(url: str, sink: str, send: bool, relaxed: bool, barrier, results) -> None:
    engine = Engine()
    route = engine.route("segment", {"write_key": "bench-key", "base_url": sink})
    route.limits = replace(route.limits, concurrency=1, batch=False)
    options = {}
    if url.startswith("postgresql"):
        options["pool_size"] = 2
        if relaxed:
            url += ("&" if "?" in url else "?") + "options=-csynchronous_commit%3Doff"
    elif relaxed:
        options["synchronous"] = "NORMAL"
    with open_store(url, upgrade=False, **options) as store:
        worker = DestinationWorker(route, store, HttpClient(timeout=10) if send else NoSend(), owner=new_owner())
        barrier.wait()
        drain([worker], store)
        results.put((time.time(), worker.stats.delivered))


def deliver(url: str, sink: str, processes: int, send: bool, relaxed: bool, n: int) -> float:
    """Deliveries per second of ``processes`` workers draining ``n`` queued deliveries."""
    barrier, results = SPAWN.Barrier(processes + 1), SPAWN.Queue()
    workers = [SPAWN.Process(target=work, args=(url, sink, send, relaxed, barrier, results)) for _ in range(processes)]
    for p in workers:
        p.start()
    barrier.wait()  # every worker has imported eventmap and opened the store
    started = time.time()
    reports = [results.get(timeout=600) for _ in workers]
    for p in workers:
        p.join()
    assert sum(count for _, count in reports) == n, reports
    return n / (max(end for end, _ in reports) - started)


class Postgres:
    """A scratch database on the server, dropped afterwards."""

    def __init__(self, server: str):
        import psycopg
        self.psycopg, self.server = psycopg, server
        self.name = f"eventmap_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = server.split("?", 1)
        self.url = base[0].rsplit("/", 1)[0] + "/" + self.name + ("?" + base[1] if len(base) > 1 else "")

    def reset(self) -> None:
        with open_store(self.url, upgrade=True):
            pass
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("TRUNCATE attempts, deliveries, events, seen")

    def drop(self) -> None:
        with self.psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("EVENTMAP_TEST_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    ports = SPAWN.Queue()
    sink_process = SPAWN.Process(target=serve_sink, args=(ports,), daemon=True)
    sink_process.start()
    sink = f"http://127.0.0.1:{ports.get(timeout=30)}"
    postgres = Postgres(args.postgres)
    scratch = tempfile.TemporaryDirectory()
    n = args.events
    cases = ["accept", "1 worker", f"{args.workers} workers", f"{args.workers} workers, no HTTP",
             f"{args.workers} workers, relaxed"]
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for round_ in range(args.rounds):
            for backend in ("SQLite", "PostgreSQL"):
                for case in cases[1:]:
                    if backend == "SQLite":
                        url = f"sqlite:///{scratch.name}/bench-{round_}-{cases.index(case)}.db"
                        open_store(url).close()
                    else:
                        url = postgres.url
                        postgres.reset()
                    run = f"{round_}-{case}"
                    rates.setdefault((backend, "accept"), []).append(fill(url, n, run))
                    processes = 1 if case == "1 worker" else args.workers
                    rates.setdefault((backend, case), []).append(
                        deliver(url, sink, processes, not case.endswith("no HTTP"), case.endswith("relaxed"), n))
    finally:
        postgres.drop()
        scratch.cleanup()
        sink_process.terminate()

    median = {key: statistics.median(values) for key, values in rates.items()}
    baseline = median[("SQLite", "1 worker")]
    print(f"{n} deliveries (Segment track, one request each) to a local sink; {args.workers} worker processes; "
          f"median of {args.rounds} rounds; {os.cpu_count()} CPUs\n")
    print(f"{'case':<24} {'SQLite/s':>10} {'PostgreSQL/s':>13} {'PG / SQLite':>12} {'SQLite x':>9} {'PG x':>7}")
    for case in cases:
        lite, pg = median[("SQLite", case)], median[("PostgreSQL", case)]
        if case == "accept":
            print(f"{case:<24} {lite:>10,.0f} {pg:>13,.0f} {pg / lite:>11.2f}x {'':>9} {'':>7}")
        else:
            print(f"{case:<24} {lite:>10,.0f} {pg:>13,.0f} {pg / lite:>11.2f}x {lite / baseline:>8.2f}x "
                  f"{pg / baseline:>6.2f}x")
    print("\n'accept' is events/s, the others deliveries/s; 'SQLite x' and 'PG x' are ratios of "
          "'SQLite, 1 worker' in this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
