"""Intake latency under abuse: 200 slow clients, and a large prune, against a baseline measured in the same run.

    python bench/bench_abuse.py [--rounds 3] [--requests 200] [--slow 200] [--done 100000]
                                [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--only slow|prune]

Starts a real ``eventmap serve --intake-only`` (2 server processes, 4 store
threads each, four destinations, SQLite at synchronous=FULL, or a scratch
PostgreSQL database) and times legitimate ``/v1/track`` calls, one at a time on
one connection, as a server-side SDK in sync mode waits for them.

slow clients   Each round times ``--requests`` calls with nothing else going on
               (the baseline), then the same number while ``--slow`` connections
               are open and abusive: half trickle their headers a byte at a time,
               half send full headers promising 10,000 bytes of body and send 10.
               Rounds alternate the two, so both see the same machine.
counters       The cost of counting one refusal in the shared memory /metrics
               reads, against a row update in a SQLite table (FULL), interleaved.
prune          Each round writes ``--done`` delivered deliveries 30 days old,
               times calls for 3 s with no prune (the baseline), then times calls
               for as long as ``store.prune`` (in another process, as the
               background worker runs it) takes to delete them all.

Prints p50 and p99 per condition and their ratio to the baseline. Every loop is
bounded in count and time.
"""
from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_ingest import ROOT, WRITE_KEY, Variant, config, start_server, stop_server

from engine.store import DELIVERED, NewDelivery, NewEvent, open_store

DAY = 86400.0
SPAWN = multiprocessing.get_context("spawn")


def track() -> dict:
    return {"type": "track", "event": "Bench", "userId": "u-1", "messageId": str(uuid.uuid4()),
            "properties": {"plan": "pro"}}


def time_calls(url: str, count: int | None = None, until=None, deadline: float = 120.0) -> list[float]:
    """Sequential /v1/track calls on one connection: ``count`` of them, or while ``until()`` is false."""
    session = requests.Session()
    took: list[float] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end and (len(took) < count if count is not None else not until()):
        began = time.perf_counter()
        answer = session.post(url + "/v1/track", json=track(), auth=(WRITE_KEY, ""), timeout=30)
        took.append(time.perf_counter() - began)
        if answer.status_code != 200:
            raise SystemExit(f"a legitimate call was answered {answer.status_code}: {answer.text}")
    return took


def percentiles(took: list[float]) -> tuple[float, float]:
    ordered = sorted(took)
    return 1000 * statistics.median(ordered), 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --------------------------------------------------------------------------- slow clients

class SlowClients:
    """``n`` abusive connections, kept open (and reopened if the server closes them) until ``close()``."""

    def __init__(self, url: str, n: int):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address, self.n = (host, int(port)), n
        self.stop = threading.Event()
        self.reopened = 0
        self.sockets: list[tuple[socket.socket, bytes]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        for i in range(self.n):
            self.sockets.append(self._open(i))
        self.thread.start()
        return self

    def _open(self, i: int) -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setblocking(False)
        head = (f"POST /v1/track HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                f"Authorization: Basic {_basic()}\r\nContent-Length: 10000\r\n\r\n").encode()
        if i % 2:               # a body shorter than promised: headers whole, then 10 bytes, then nothing
            sock.sendall(head + b'{"userId":')
            return sock, b""
        return sock, head       # headers trickled: one byte per tick

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            for i, (sock, rest) in enumerate(self.sockets):
                try:
                    if rest:
                        sock.send(rest[:1])
                        self.sockets[i] = (sock, rest[1:])
                except OSError:
                    sock.close()
                    self.reopened += 1
                    self.sockets[i] = self._open(i)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock, _ in self.sockets:
            sock.close()

    def __exit__(self, *exc):
        self.close()


def _basic() -> str:
    import base64
    return base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def slow_clients(url: str, rounds: int, count: int, slow: int) -> dict:
    results: dict[str, list[float]] = {"baseline": [], "slow": []}
    for _ in range(rounds):
        results["baseline"] += time_calls(url, count)
        with SlowClients(url, slow):
            time.sleep(1.0)   # every slow connection has started its abuse
            results["slow"] += time_calls(url, count)
    return results


# --------------------------------------------------------------------------- prune under intake

def fill(store_url: str, folder: Path, done: int, now: float) -> None:
    """``done`` delivered deliveries, 30 days old, one event each, in transactions of 1,000."""
    with open_store(store_url, base=folder) as store:
        for start in range(0, done, 1000):
            store.accept([NewEvent(track(), None, [NewDelivery("planhat", DELIVERED)])
                          for _ in range(min(1000, done - start))], now - 30 * DAY)


def prune(store_url: str, folder: str, before: float, answer) -> None:
    with open_store(store_url, base=Path(folder)) as store:
        began = time.perf_counter()
        deleted = store.prune(before)
        answer.put((deleted, time.perf_counter() - began))


def prune_under_intake(url: str, store_url: str, folder: Path, rounds: int, done: int) -> dict:
    results: dict[str, list[float]] = {"baseline": [], "prune": []}
    durations = []
    for _ in range(rounds):
        now = time.time()
        fill(store_url, folder, done, now)
        began = time.monotonic()
        results["baseline"] += time_calls(url, until=lambda b=began: time.monotonic() - b > 3.0)
        answer = SPAWN.Queue()
        process = SPAWN.Process(target=prune, args=(store_url, str(folder), now - 7 * DAY, answer))
        process.start()
        results["prune"] += time_calls(url, until=lambda p=process: not p.is_alive(), deadline=600)
        process.join()
        deleted, seconds = answer.get(timeout=10)
        if deleted < done:
            raise SystemExit(f"the prune deleted {deleted} deliveries, expected at least {done}")
        durations.append(seconds)
    return {**results, "prune_seconds": durations}


# --------------------------------------------------------------------------- refusal counters

def counter_cost(folder: Path, count: int = 2000) -> tuple[float, float]:
    """µs per refusal counted: in the shared memory /metrics reads, and (the alternative) as a row update in a
    SQLite table at synchronous=FULL, interleaved in chunks of 100."""
    import sqlite3

    from engine.serve.metrics import Refusals
    refusals = Refusals()
    conn = sqlite3.connect(folder / "counters.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE refused (status INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("INSERT INTO refused VALUES (401, 0)")
    shared = table_time = 0.0
    for _ in range(count // 100):
        began = time.perf_counter()
        for _ in range(100):
            refusals.count(401)
        shared += time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(100):
            conn.execute("UPDATE refused SET n = n + 1 WHERE status = 401")
        table_time += time.perf_counter() - began
    conn.close()
    return 1e6 * shared / count, 1e6 * table_time / count


def table(title: str, results: dict, conditions: list[str]) -> None:
    base50, base99 = percentiles(results["baseline"])
    print(f"\n{title}\n")
    print("| condition | calls | p50 | p99 | p50 vs baseline | p99 vs baseline |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ["baseline", *conditions]:
        p50, p99 = percentiles(results[name])
        print(f"| {name} | {len(results[name])} | {p50:.1f} ms | {p99:.1f} ms | {p50 / base50:.2f}x | {p99 / base99:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="timed calls per condition and round (slow clients)")
    parser.add_argument("--slow", type=int, default=200, help="abusive connections")
    parser.add_argument("--done", type=int, default=100_000, help="done deliveries to prune per round")
    parser.add_argument("--postgres", help="a PostgreSQL server URL: the prune runs there, in a scratch database")
    parser.add_argument("--only", choices=["slow", "prune", "counters"])
    args = parser.parse_args()

    if args.only in (None, "counters"):
        with tempfile.TemporaryDirectory() as tmp:
            shared, row = counter_cost(Path(tmp))
        print(f"\nA refusal counted: {shared:.1f} µs in shared memory; {row:.0f} µs as a SQLite row update "
              f"(synchronous=FULL), {row / shared:.0f}x as much")
        if args.only:
            return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store_url, drop = "sqlite:///bench.db", None
        if args.postgres:
            store_url, drop = scratch_postgres(args.postgres)
        path = config(folder)
        path.write_text(path.read_text().replace("sqlite:///bench.db", store_url), encoding="utf-8")
        open_store(store_url, base=folder, upgrade=True).close()
        process, url = start_server(folder, Variant("eventmap", ROOT), 2, 4)
        try:
            time_calls(url, 50)   # warm up
            backend = "PostgreSQL" if args.postgres else "SQLite synchronous=FULL"
            if args.only != "prune":
                table(f"/v1/track, one call at a time, with {args.slow} slow connections open ({args.rounds} rounds "
                      f"of {args.requests} calls per condition; 2 server processes, {backend})",
                      slow_clients(url, args.rounds, args.requests, args.slow), ["slow"])
            if args.only != "slow":
                results = prune_under_intake(url, store_url, folder, args.rounds, args.done)
                table(f"/v1/track while pruning {args.done:,} done deliveries ({args.rounds} rounds; {backend}; "
                      f"prune took {', '.join(f'{s:.1f}' for s in results['prune_seconds'])} s)", results, ["prune"])
        finally:
            stop_server(process)
            if drop:
                drop()


def scratch_postgres(server_url: str):
    import psycopg
    name = f"eventmap_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = server_url.rsplit("/", 1)[0] + "/" + name

    def drop():
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return url, drop


if __name__ == "__main__":
    main()
