"""How soon an accepted event reaches its vendor, and what an idle server costs its store (issue 26).

    python bench/bench_latency.py [--events 300] [--rounds 3] [--gap 0.3] [--idle 10]
                                  [--stores sqlite postgres] [--intake validate queue] [--against REF]

Starts a real ``eventmap serve`` per configuration (a fresh store each time),
with one destination, the shipped Segment mapping (it batches), pointed at a
stand-in vendor: an HTTP server in this process that notes when each messageId
arrives. Then, one event at a time, it posts ``/v1/track`` as an SDK in sync
mode does (keep-alive, Basic auth with the write key), waits until the
stand-in has the event, and waits a gap of ``--gap`` to 4/3 of it (random, so
the sends do not fall in step with a poll) before the next. For each event:

  request to vendor   from just before the POST to the stand-in's receipt
  ack to vendor       from the 200 to the stand-in's receipt: the wait issue 26
                      sets a target for (50 ms at p50, 200 ms at p99)

Gaps longer than ``delivery.batch_wait`` (200 ms by default) mean nothing is
queued ahead of an event and no batch is gathering: the figure is the wake-up
path, not the batching trade-off (docs/operations.md says what that costs).

Then the server is left idle for ``--idle`` seconds and the statements its
processes send to the store are counted (statements per second while idle):
this script puts a ``sitecustomize`` on the server's PYTHONPATH that counts
every SQLite statement (``set_trace_callback``: BEGIN, COMMIT and reads
included) and every psycopg ``execute``/``executemany``/``copy``, per process,
into a folder this script reads; the code under test is unchanged.

Configurations: ``--stores`` (SQLite at synchronous=FULL in a temporary
folder; PostgreSQL from EVENTMAP_BENCH_POSTGRES, default the local server, a
database made and dropped per server) times ``--intake`` (``validate``, the
default, and ``queue``: the inbox processor runs in the background process).
With ``--against REF`` each configuration also runs from REF's tree
(``git archive`` into a temporary folder), the baseline, which polls once a
second; rounds interleave this tree and REF, configuration by configuration,
``--events / --rounds`` events each, so the shared machine's noise falls on both.

Prints a Markdown table: p50, p90 and p99 per tree and configuration, the
idle statements per second, and the ratios of this tree to REF.

``--write-cost`` measures instead what wake-ups cost a write, in this process:
400 single-event ``accept`` calls (two queued deliveries each) and 400
single-request ``receive`` calls (the inbox), per store, with the store's
wake-ups sent as usual and with them replaced by nothing, interleaved for
``--rounds`` rounds; medians per call.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_ingest import stop_server  # noqa: E402  (SIGTERM, then SIGKILL to the group)

WRITE_KEY = "bench-latency-key"
POSTGRES = os.environ.get("EVENTMAP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
ARRIVAL_DEADLINE = 10.0   # seconds an event may take to arrive before it counts as lost

# Counts the store statements of every process that imports it (the server's, forked or started anew).
COUNTER = '''\
import os, threading, time

FOLDER = os.environ.get("EVENTMAP_BENCH_COUNT")
if FOLDER:
    _count = [0]

    def _add(*_):
        _count[0] += 1

    def _flush_forever():
        while True:
            time.sleep(0.2)
            path = os.path.join(FOLDER, str(os.getpid()))
            with open(path + ".tmp", "w") as out:
                out.write(str(_count[0]))
            os.replace(path + ".tmp", path)

    def _start():
        _count[0] = 0
        threading.Thread(target=_flush_forever, daemon=True).start()

    import sqlite3
    _connect = sqlite3.connect

    def _counted_connect(*args, **kwargs):
        conn = _connect(*args, **kwargs)
        conn.set_trace_callback(_add)
        return conn

    sqlite3.connect = _counted_connect
    try:
        import psycopg
    except ImportError:
        pass
    else:
        for _name in ("execute", "executemany", "copy"):
            def _wrap(real):
                def counted(self, *args, **kwargs):
                    _add()
                    return real(self, *args, **kwargs)
                return counted
            setattr(psycopg.Cursor, _name, _wrap(getattr(psycopg.Cursor, _name)))
    os.register_at_fork(after_in_child=_start)
    _start()
'''


@dataclass(frozen=True)
class Setup:
    store: str     # sqlite or postgres
    intake: str    # validate or queue

    def __str__(self) -> str:
        return f"{self.store}, intake: {self.intake}"


@dataclass
class Result:
    request_to_vendor: list[float] = field(default_factory=list)
    ack_to_vendor: list[float] = field(default_factory=list)
    lost: int = 0
    idle_per_second: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- the stand-in vendor

class StandIn:
    """A vendor on a free localhost port: answers 200 at once and notes when each messageId first arrived."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                at = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                found = re.findall(rb'"messageId"\s*:\s*"([^"]+)"', body)
                with stand_in.changed:
                    for message_id in found:
                        stand_in.arrived.setdefault(message_id.decode(), at)
                    stand_in.changed.notify_all()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, message_id: str, deadline: float) -> float | None:
        end = time.monotonic() + deadline
        with self.changed:
            while message_id not in self.arrived:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return self.arrived[message_id]


# --------------------------------------------------------------------------- servers

def config_text(setup: Setup, store_url: str, vendor: str) -> str:
    server = "server:\n  intake: queue\n" if setup.intake == "queue" else ""
    return textwrap.dedent(f"""\
        sources:
          bench: {{write_key: {WRITE_KEY}}}
        destinations:
          segment: {{settings: {{write_key: downstream, base_url: "{vendor}"}}}}
        storage: {store_url}
        """) + server


@contextmanager
def store_url(setup: Setup, tree: Path, folder: Path):
    """A fresh store for one server: a SQLite file in ``folder``, or a PostgreSQL database made and upgraded."""
    if setup.store == "sqlite":
        yield "sqlite:///bench.db"
        return
    import psycopg
    name = f"eventmap_latency_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(POSTGRES)._replace(path=f"/{name}"))
    try:
        (folder / "upgrade.yaml").write_text(f"destinations: {{segment: {{}}}}\nstorage: {url}\n")
        subprocess.run([sys.executable, "-m", "engine", "db", "upgrade", "--config", str(folder / "upgrade.yaml")],
                       cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True)
        yield url
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def serving(tree: Path, setup: Setup, vendor: str, counter: Path):
    folder = Path(tempfile.mkdtemp(prefix="eventmap-latency-"))
    counts = folder / "counts"
    counts.mkdir()
    try:
        with store_url(setup, tree, folder) as url:
            (folder / "eventmap.yaml").write_text(config_text(setup, url, vendor), encoding="utf-8")
            log = folder / "server.log"
            env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree), str(counter))),
                   "EVENTMAP_BENCH_COUNT": str(counts), "PYTHONUNBUFFERED": "1"}
            with open(log, "wb") as out:
                process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--config", "eventmap.yaml",
                                            "--port", "0"], cwd=folder, env=env, stdout=out, stderr=out,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                address = wait_listening(process, log)
                yield address, counts
            finally:
                stop_server(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_listening(process: subprocess.Popen, log: Path) -> str:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise SystemExit("the server did not start within 60s")


def statements(counts: Path) -> int:
    total = 0
    for path in counts.iterdir():
        if path.suffix != ".tmp":
            with suppress(OSError, ValueError):   # a process that has not written its count yet
                total += int(path.read_text() or 0)
    return total


# --------------------------------------------------------------------------- one measurement

def measure(tree: Path, setup: Setup, stand_in: StandIn, counter: Path, events: int, gap: float, idle: float,
            result: Result) -> None:
    with serving(tree, setup, stand_in.url, counter) as (address, counts):
        session = requests.Session()
        session.auth = (WRITE_KEY, "")

        def send() -> tuple[float, float, float | None]:
            message_id = f"bench-{uuid.uuid4()}"
            body = {"type": "track", "userId": "u-1", "event": "Latency Probe", "messageId": message_id,
                    "properties": {"n": 1}}
            began = time.monotonic()
            answer = session.post(address + "/v1/track", json=body, timeout=30)
            acked = time.monotonic()
            if answer.status_code != 200:
                raise SystemExit(f"{answer.status_code}: {answer.text}")
            return began, acked, stand_in.wait_for(message_id, ARRIVAL_DEADLINE)

        for _ in range(3):   # warm up: connections, the background process's first turns
            send()
            time.sleep(gap)
        for _ in range(events):
            began, acked, arrived = send()
            if arrived is None:
                result.lost += 1
            else:
                result.request_to_vendor.append(arrived - began)
                result.ack_to_vendor.append(arrived - acked)
            time.sleep(random.uniform(gap, gap * 4 / 3))
        time.sleep(2)   # the last turn's writes, the report thread's first look
        before, at = statements(counts), time.monotonic()
        time.sleep(idle)
        result.idle_per_second.append((statements(counts) - before) / (time.monotonic() - at))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(value: float) -> str:
    return f"{1000 * value:.2f} ms" if value < 0.01 else f"{1000 * value:.1f} ms"


# --------------------------------------------------------------------------- main

@contextmanager
def archive(ref: str):
    """REF's tree, from ``git archive``, in a temporary folder removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="eventmap-latency-ref-"))
    try:
        data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=data, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def nothing():
    yield None


def write_cost(stores: list[str], rounds: int, calls: int = 400) -> None:
    sys.path.insert(0, str(ROOT))
    from engine.store import NewDelivery, NewEvent, Received, open_store
    from engine.store.wake import Notifier

    folder = Path(tempfile.mkdtemp(prefix="eventmap-latency-cost-"))
    print("| store | wake-ups | accept, one event | receive, one request |")
    print("| --- | --- | ---: | ---: |")
    try:
        for name in stores:
            setup = Setup(name, "validate")
            with store_url(setup, ROOT, folder) as url:
                store = open_store(url, base=folder, upgrade=True)
                sending, silent = store._wakes, Notifier(lambda names: None)
                timings: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
                for _ in range(rounds):
                    for waking in (False, True):
                        store._wakes = sending if waking else silent
                        began = time.perf_counter()
                        for _ in range(calls):
                            store.accept([NewEvent({"type": "track"}, str(uuid.uuid4()),
                                                   [NewDelivery("a"), NewDelivery("b")])], time.time(), 86400)
                        accept = (time.perf_counter() - began) / calls
                        began = time.perf_counter()
                        for _ in range(calls):
                            store.receive([Received("track", b"{}", time.time())])
                        timings[waking].append((accept, (time.perf_counter() - began) / calls))
                store._wakes = sending
                store.close()
                for waking in (False, True):
                    accepts, receives = zip(*timings[waking])
                    print(f"| {name} | {'sent' if waking else 'none'} | {ms(statistics.median(accepts))} "
                          f"({', '.join(f'{1000 * a:.2f}' for a in accepts)}) | {ms(statistics.median(receives))} "
                          f"({', '.join(f'{1000 * r:.2f}' for r in receives)}) |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300, help="events per configuration and tree (all rounds)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between one arrival and the next send (to 4/3 of it)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle during which statements are counted")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--intake", nargs="+", default=["validate", "queue"], choices=["validate", "queue"])
    parser.add_argument("--against", metavar="REF", help="also run REF's tree (the baseline) in the same rounds")
    parser.add_argument("--write-cost", action="store_true", help="time writes with and without wake-ups instead")
    args = parser.parse_args()
    if args.write_cost:
        write_cost(args.stores, args.rounds)
        return
    setups = [Setup(store, intake) for store in args.stores for intake in args.intake]
    stand_in = StandIn()
    counter = Path(tempfile.mkdtemp(prefix="eventmap-latency-counter-"))
    (counter / "sitecustomize.py").write_text(COUNTER, encoding="utf-8")
    per_round = max(1, args.events // args.rounds)
    try:
        with archive(args.against) if args.against else nothing() as old:
            trees = [("this tree", ROOT)] + ([(args.against, old)] if old is not None else [])
            results = {(name, setup): Result() for name, _ in trees for setup in setups}
            for number in range(args.rounds):
                for setup in setups:
                    for name, tree in trees:
                        began = time.monotonic()
                        measure(tree, setup, stand_in, counter, per_round, args.gap, args.idle,
                                results[(name, setup)])
                        print(f"round {number + 1}/{args.rounds}, {name}, {setup}: {time.monotonic() - began:.0f}s",
                              file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(counter, ignore_errors=True)
    report(trees, setups, results, args)


def report(trees, setups, results, args) -> None:
    print(f"\n{args.events // args.rounds * args.rounds} events per row, one at a time, gaps of "
          f"{args.gap:g} to {args.gap * 4 / 3:g} s; idle statements counted over {args.idle:g} s per round\n")
    print("| tree | store, intake | ack to vendor p50 | p90 | p99 | max | over 200 ms | request to vendor p50 | p99 "
          "| lost | idle statements/s (per round) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for setup in setups:
        for name, _ in trees:
            r = results[(name, setup)]
            if not r.ack_to_vendor:
                print(f"| {name} | {setup} | (none arrived) | | | | | | | {r.lost} | |")
                continue
            idle = ", ".join(f"{v:.1f}" for v in r.idle_per_second)
            print(f"| {name} | {setup} | {ms(statistics.median(r.ack_to_vendor))} | "
                  f"{ms(percentile(r.ack_to_vendor, 0.9))} | {ms(percentile(r.ack_to_vendor, 0.99))} | "
                  f"{ms(max(r.ack_to_vendor))} | {sum(v > 0.2 for v in r.ack_to_vendor)} | "
                  f"{ms(statistics.median(r.request_to_vendor))} | {ms(percentile(r.request_to_vendor, 0.99))} | "
                  f"{r.lost} | {statistics.median(r.idle_per_second):.1f} ({idle}) |")
    if len(trees) > 1:
        new, old = trees[0][0], trees[1][0]
        print(f"\n| store, intake | ack to vendor p50, {new} / {old} | p99 | idle statements/s, {new} / {old} |")
        print("| --- | ---: | ---: | ---: |")
        for setup in setups:
            a, b = results[(new, setup)], results[(old, setup)]
            if not (a.ack_to_vendor and b.ack_to_vendor):
                continue
            idle_old = statistics.median(b.idle_per_second)
            idle_ratio = f"{statistics.median(a.idle_per_second) / idle_old:.2f}" if idle_old else "n/a"
            print(f"| {setup} | {statistics.median(a.ack_to_vendor) / statistics.median(b.ack_to_vendor):.3f} | "
                  f"{percentile(a.ack_to_vendor, 0.99) / percentile(b.ack_to_vendor, 0.99):.3f} | {idle_ratio} |")


if __name__ == "__main__":
    main()
