"""How fast each store takes accepted events in: PostgreSQL against SQLite, the store write alone.

Run: python bench/bench_accept.py [--events 20000] [--rounds 5] [--threads 1 4]
     [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

What a collector does after validating and routing: ``store.accept`` with
batches of 100 events, four queued deliveries each, dedupe on (one messageId
claim per event), SQLite at synchronous=FULL and PostgreSQL at its defaults
(synchronous_commit=on): every call is durable when it returns. With
``--threads N`` that many threads call it at once, as a server process's
store threads do (SQLite then shares commits between them: group commit).

Rounds interleave the backends (SQLite, PostgreSQL, SQLite, ...) on a fresh
SQLite file and a fresh PostgreSQL database each, and the table gives medians
and PostgreSQL's rate as a ratio of SQLite's from the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.store import NewDelivery, NewEvent, open_store  # noqa: E402

DESTINATIONS = ("planhat", "richpanel", "crisp", "segment")
SAMPLE = json.loads((ROOT / "fixtures" / "sample-events.jsonl").read_text().splitlines()[0])
DATABASE = "eventmap_bench_accept"


def batches(events: int, size: int = 100) -> list[list[NewEvent]]:
    made = []
    for _ in range(events // size):
        batch = []
        for _ in range(size):
            message_id = str(uuid.uuid4())
            batch.append(NewEvent({**SAMPLE, "messageId": message_id}, message_id,
                                  [NewDelivery(d) for d in DESTINATIONS]))
        made.append(batch)
    return made


def rate(store, events: int, threads: int) -> float:
    """Events per second for ``threads`` threads sharing the batches of ``events`` events."""
    work = batches(events)
    parts = [work[i::threads] for i in range(threads)]
    gate = threading.Barrier(threads + 1)

    def writer(part):
        gate.wait()
        for batch in part:
            store.accept(batch, time.time(), 86400)

    pool = [threading.Thread(target=writer, args=(part,)) for part in parts]
    for thread in pool:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    return sum(len(b) for b in work) / (time.perf_counter() - began)


def postgres_store(server: str):
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    url = server.rsplit("/", 1)[0] + "/" + DATABASE
    return open_store(url, upgrade=True, pool_size=8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000,
                        help="events per round (4,000, 40 batches, moved the ratio by 0.2 between runs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--postgres", default=os.environ.get("EVENTMAP_TEST_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    print(f"store.accept: {args.events} events in batches of 100, {len(DESTINATIONS)} deliveries each, dedupe on, "
          f"durable; medians of {args.rounds} interleaved rounds, {os.cpu_count()} cores\n")
    print("| writers | SQLite (FULL) events/s | PostgreSQL events/s | PostgreSQL / SQLite |")
    print("| --- | ---: | ---: | ---: |")
    for threads in args.threads:
        sqlite_rates, postgres_rates = [], []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder, open_store(f"sqlite:///{folder}/bench.db") as store:
                sqlite_rates.append(rate(store, args.events, threads))
            with postgres_store(args.postgres) as store:
                postgres_rates.append(rate(store, args.events, threads))
        sqlite_rate, postgres_rate = statistics.median(sqlite_rates), statistics.median(postgres_rates)
        print(f"| {threads} | {sqlite_rate:,.0f} | {postgres_rate:,.0f} | {postgres_rate / sqlite_rate:.2f}x |",
              flush=True)
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
