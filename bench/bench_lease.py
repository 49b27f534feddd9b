"""Lease time against backlog size: a worker's lease must not slow down as deliveries pile up.

Run: python bench/bench_lease.py [--small 1000] [--large 100000] [--leases 50] [--postgres URL]

For each backend (a scratch SQLite file; with --postgres, a scratch schema in that database),
two stores are filled with ``--small`` and ``--large`` queued deliveries of one destination.
Leases of 3 (what one worker takes under the default lease and timeout) are then taken from the
two stores in alternation, so both sizes see the same machine load, and the median time of each is
printed with the large/small ratio (the target: within 2x).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.store import QUEUED, NewDelivery, NewEvent, open_store  # noqa: E402


def filled(url: str, count: int, now: float):
    store = open_store(url, upgrade=True)
    batch = []
    for i in range(count):
        batch.append(NewEvent({"type": "track", "event": "Bench", "i": i}, f"m{i}", [NewDelivery("bench", QUEUED)]))
        if len(batch) == 5000:
            store.accept(batch, now - 60)
            batch = []
    if batch:
        store.accept(batch, now - 60)
    return store


def measure(small, large, leases: int, now: float) -> tuple[float, float]:
    times: dict[int, list[float]] = {0: [], 1: []}
    for turn in range(leases):
        for which, store in enumerate((small, large)):
            started = time.perf_counter()
            store.lease("bench", 3, f"owner-{turn}", now + turn, 3600)
            times[which].append(time.perf_counter() - started)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def postgres_urls(server: str) -> tuple[list[str], callable]:
    import psycopg
    from urllib.parse import quote
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(server, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in server else "?"
    urls = [f"{server}{joiner}options={quote(f'-csearch_path={schema}', safe='')}" for schema in schemas]

    def drop():
        with psycopg.connect(server, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return urls, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--leases", type=int, default=50)
    parser.add_argument("--postgres", help="also measure PostgreSQL, in scratch schemas of this database")
    args = parser.parse_args()
    now = time.time()
    print(f"lease of 3 deliveries, median of {args.leases}, {args.small:,} vs {args.large:,} pending")
    print("| store | small backlog ms | large backlog ms | large / small |")
    print("| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        small = filled(f"sqlite:///{folder}/small.db", args.small, now)
        large = filled(f"sqlite:///{folder}/large.db", args.large, now)
        a, b = measure(small, large, args.leases, now)
        print(f"| SQLite | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
        small.close()
        large.close()
    if args.postgres:
        urls, drop = postgres_urls(args.postgres)
        try:
            small, large = filled(urls[0], args.small, now), filled(urls[1], args.large, now)
            a, b = measure(small, large, args.leases, now)
            print(f"| PostgreSQL | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
            small.close()
            large.close()
        finally:
            drop()


if __name__ == "__main__":
    main()
