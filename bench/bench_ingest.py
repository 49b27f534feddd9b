"""How fast ``eventmap serve`` accepts events, durably, against the baselines issue 16 sets.

    python bench/bench_ingest.py [--events 40000] [--batch 100] [--senders 8] [--clients 8] [--track-client wrk]
                                 [--workers 1 2 4] [--rounds 3] [--against REF] [--intake MODE ...]

Starts real servers on free localhost ports, each with a fresh store in a
temporary folder: four destinations (four delivery rows per event), SQLite at
synchronous=FULL, the default, so every 200 is on disk. The load comes from a
second process (this script with ``--generate``), so client and server do not
share an interpreter. Events are the shipped samples with fresh message ids.
Each server is measured on three loads, one after the other:

  /v1/batch        ``--senders`` connections post batches of ``--batch`` events
                   (as analytics-python sends them) until ``--events`` are in
  /v1/track, 8     ``--clients`` connections post one event per request, each
                   with its own messageId: from wrk (``--track-client wrk``, the
                   default when Debian's wrk package is installed) for
                   ``--track-seconds``, or from this script's Python threads
                   until ``--track-events`` are in. Python's http.client costs
                   about 190 us of the shared two cores per call, wrk a tenth of
                   that, so with wrk the figure is the server's, as when clients
                   run on other machines. The CPU the server's processes used
                   meanwhile, per call, is shown too
  /v1/track p50    one connection, one event at a time (``--single`` calls):
                   what an SDK in sync mode waits per call

The servers, each started anew per round and interleaved (bare, eventmap,
[eventmap at REF], bare, eventmap, ...), so that noise from the shared machine
falls on all of them alike:

  bare             bench/bare_app.py: the same server stack and options
                   (GunicornServer, AsgiCollector, workers, threads, timeouts)
                   serving an app that only parses the body with orjson. Target:
                   eventmap's /v1/batch events/s at least 0.25 of it.
  eventmap         this tree, ``--intake-only`` (accept and store, no delivery).
  intake: MODE     with ``--intake MODE`` (repeatable; ``default`` writes no key):
                   ``server: {intake: MODE}`` in the configuration. ``queue`` is
                   measured twice: ``--intake-only`` (what the collector
                   acknowledges; its processor would run elsewhere), and with
                   its background process on the same cores (destinations point
                   at a local sink, bench/sink.py), where a further figure,
                   "processed events/s", counts from the first request until the
                   store's ``inbox`` table is empty. A server that refuses the
                   key is skipped with a note.
  eventmap@REF     with ``--against REF``: the same server from a temporary
                   ``git worktree`` of REF (cwd and PYTHONPATH there, the same
                   interpreter), removed afterwards. Target: this tree's
                   /v1/track-8 events/s at least 5x REF's.

Prints a Markdown table of medians over the rounds, then the ratios (the
median of each round's ratio, and every round's), then where one process
spends its time per event. Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.validate import EventValidator  # noqa: E402

# the shipped samples that follow the spec (one is there to show a rejection)
SAMPLES = [event for event in (json.loads(line) for line in
                               (ROOT / "fixtures" / "sample-events.jsonl").read_text().splitlines() if line)
           if not EventValidator().check(event)]
WRITE_KEY = "bench-write-key"
DEADLINE = 300.0   # seconds: no phase runs longer
DEFAULT = "default"   # the --intake mode that writes no intake key
DESTINATIONS = {"planhat": "{tenant_token: t}", "richpanel": "{api_key: k, api_secret: s}",
                "crisp": '{api_key: "id:key", website_id: w}', "segment": "{write_key: downstream}"}


def config(folder: Path, intake: str | None = None, sink: str | None = None) -> Path:
    """The bench configuration; ``intake`` goes under ``server:``, ``sink`` is every destination's base_url."""
    def settings(text: str) -> str:
        return text if sink is None else text[:-1] + f", base_url: \"{sink}\"}}"

    destinations = "".join(f"  {name}: {{settings: {settings(text)}}}\n" for name, text in DESTINATIONS.items())
    server = f"server:\n  intake: {intake}\n" if intake else ""
    path = folder / "eventmap.yaml"
    path.write_text(textwrap.dedent(f"""\
        sources:
          bench: {{write_key: {WRITE_KEY}}}
        destinations:
        """) + destinations + "storage: sqlite:///bench.db\n" + server, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Variant:
    """One server to measure: which code, which app, which intake mode."""

    name: str
    tree: Path                 # the checkout its code runs from (cwd and PYTHONPATH)
    bare: bool = False         # bench/bare_app.py instead of eventmap serve
    intake: str | None = None  # written under server: (None: no key)
    processes: bool = False    # the inbox is processed in the background (so the server delivers, to the sink)


class ServerRefused(Exception):
    """The server exited before listening; the message is its log."""


def start_server(folder: Path, variant: Variant, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    log_path = folder / "server.log"
    options = ["--config", str(folder / "eventmap.yaml"), "--port", "0", "--workers", str(workers),
               "--threads", str(threads)]
    if variant.bare:
        command = [sys.executable, str(ROOT / "bench" / "bare_app.py"), *options]
    else:
        command = [sys.executable, "-m", "engine", "serve", *options] + ([] if variant.processes else ["--intake-only"])
    with open(log_path, "wb") as log:   # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=variant.tree, env={**os.environ, "PYTHONPATH": str(variant.tree)},
                                   stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = re.search(r"listening on (http://\S+)", log_path.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise ServerRefused(log_path.read_text().strip())
        time.sleep(0.05)
    stop_server(process)
    raise SystemExit(f"{variant.name}: the server did not start within 60s")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to its whole process group (started with start_new_session) after 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def checkout(ref: str):
    """A detached git worktree of ``ref`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="eventmap-bench-"))
    tree = folder / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), ref], check=True)
    try:
        found = subprocess.run([sys.executable, "-c", "import engine; print(engine.__file__)"], cwd=tree,
                               env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True)
        if not found.stdout.strip().startswith(str(tree)):
            raise SystemExit(f"with PYTHONPATH={tree}, engine is imported from {found.stdout.strip()}")
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def events(n: int) -> list[dict]:
    return [{**SAMPLES[i % len(SAMPLES)], "messageId": str(uuid.uuid4())} for i in range(n)]


def track_event(event: dict) -> dict:
    return {**event, "type": "track", "event": "Bench", "userId": "u-1"}


# --------------------------------------------------------------------------- the load generator (second process)

def generate(url: str, total: int, batch: int, senders: int) -> dict:
    """``senders`` connections post batches until ``total`` events were acknowledged (or the deadline)."""
    per_sender = total // senders // batch
    bodies = [[json.dumps({"batch": events(batch), "sentAt": "2024-05-02T09:20:00Z"}).encode()
               for _ in range(per_sender)] for _ in range(senders)]
    return _post_all(url + "/v1/batch", bodies, batch)


def track_clients(url: str, total: int, clients: int) -> dict:
    """``clients`` threads, each on its own connection, post one event per /v1/track until ``total`` are in."""
    bodies = [[json.dumps(track_event(event)).encode() for event in events(total // clients)] for _ in range(clients)]
    return _post_all(url + "/v1/track", bodies, 1)


def _post_all(url: str, bodies: list[list[bytes]], per_request: int) -> dict:
    """One thread and one keep-alive connection per list of bodies, started together; bounded by DEADLINE.

    http.client, not requests: requests costs the client about 1 ms of CPU per call, which on two cores
    shared with the server capped even the bare app near 400 requests a second. Headers and body go in
    one write (no Nagle or delayed-ACK stalls).
    """
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(len(bodies) + 1)
    deadline = time.monotonic() + DEADLINE
    target = urllib.parse.urlsplit(url)
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

    def sender(mine: list[bytes]):
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start_gate.wait()
        for body in mine:
            if time.monotonic() > deadline:
                break
            began = time.perf_counter()
            connection.request("POST", target.path, body=body, headers={
                "Content-Type": "application/json", "Authorization": auth, "Content-Length": str(len(body))})
            answer = connection.getresponse()
            text = answer.read()
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                if answer.status != 200:
                    failures.append(f"{answer.status}: {text[:200]!r}")
        connection.close()

    threads = [threading.Thread(target=sender, args=(mine,)) for mine in bodies]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started_at, began = time.time(), time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    accepted = (len(latencies) - len(failures)) * per_request
    return {"events": accepted, "seconds": elapsed, "events_per_second": accepted / elapsed, "started_at": started_at,
            "request_p50_ms": 1000 * statistics.median(latencies), "failures": failures[:3]}


WRK_SCRIPT = """\
-- bench_ingest.py: one /v1/track per request, each with its own messageId, cycling through the samples
local bodies = {%(bodies)s}
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  sent = 0
end
function request()
  sent = sent + 1
  local body = bodies[(sent %% #bodies) + 1]
  return wrk.format("POST", nil, nil, body[1] .. tid .. "-" .. sent .. body[2])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK {\\"requests\\": %%d, \\"seconds\\": %%f, \\"status_errors\\": %%d, "
    .. "\\"socket_errors\\": %%d, \\"p50_us\\": %%d}\\n", summary.requests, summary.duration / 1e6,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50)))
end
"""


def wrk_track(url: str, seconds: float, clients: int) -> dict:
    """/v1/track from ``clients`` connections of wrk (C, from Debian's wrk package) for ``seconds``: a load
    generator that costs the shared cores about a tenth of the Python one's CPU per call, so the figure is
    the server's, as when clients run elsewhere. Every body has its own messageId (the old server dedupes)."""
    run = uuid.uuid4().hex[:12]
    bodies = []
    for event in events(len(SAMPLES)):
        text = json.dumps({**track_event(event), "messageId": "@ID@"})
        prefix, suffix = text.split("@ID@")
        bodies.append(f"{{[==[{prefix}{run}-]==], [==[{suffix}]==]}}")
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    started_at = time.time()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"bodies": ", ".join(bodies)})
    try:
        done = subprocess.run(["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds:g}s", "--timeout", "30s",
                               "-s", script.name, "-H", "Content-Type: application/json", "-H", f"Authorization: {auth}",
                               url + "/v1/track"], capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(script.name)
    found = re.search(r"^WRK (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result = json.loads(found.group(1))
    failed = result["status_errors"] + result["socket_errors"]
    accepted = result["requests"] - failed
    return {"events": accepted, "seconds": result["seconds"], "events_per_second": accepted / result["seconds"],
            "started_at": started_at, "request_p50_ms": result["p50_us"] / 1000,
            "failures": [f"{failed} requests failed (non-2xx or socket errors)"] if failed else []}


def single_latency(url: str, count: int) -> dict:
    """One connection, one /v1/track at a time: what a server-side SDK in sync mode waits per call."""
    session = requests.Session()
    took = []
    for event in events(count):
        began = time.perf_counter()
        answer = session.post(url + "/v1/track", json=track_event(event), auth=(WRITE_KEY, ""), timeout=30)
        took.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
    took.sort()
    return {"p50_ms": 1000 * took[len(took) // 2], "p95_ms": 1000 * took[int(len(took) * 0.95)],
            "p99_ms": 1000 * took[int(len(took) * 0.99)]}


def breakdown(folder: Path, count: int = 2000, batch: int = 100) -> dict:
    """Where a server process spends its time per event, measured in this process on the same events."""
    from engine import Engine
    from engine.intake import Intake
    from engine.load.config import load_config, routes_from_config
    from engine.serve.segment_api import complete, oversize_error, utc
    from engine.store import open_store

    loaded, _ = load_config(config(folder))
    engine = Engine()
    with open_store("sqlite:///breakdown.db", base=folder) as store:
        intake = Intake(engine, routes_from_config(engine, loaded), store)
        body = json.dumps({"batch": events(count)}).encode()
        marks = [time.perf_counter()]
        data = json.loads(body)
        marks.append(time.perf_counter())
        now = time.time()
        items = [complete(item, "batch", data, utc(now)) for item in data["batch"] if not oversize_error(item)]
        marks.append(time.perf_counter())
        decided = [intake.decide(item)[0] for item in items]
        marks.append(time.perf_counter())
        for start in range(0, count, batch):
            store.accept(decided[start:start + batch], now, intake.dedupe_window)
        marks.append(time.perf_counter())
    steps = ["parse JSON", "limits and Segment fields", "validate and route", "store (one transaction per batch)"]
    return {step: 1e6 * (b - a) / count for step, a, b in zip(steps, marks, marks[1:])}


def run_generator(url: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--generate", url, *args], capture_output=True, text=True,
                          timeout=DEADLINE + 120)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def inbox_empty(db: Path, deadline: float) -> float | None:
    """When the store's ``inbox`` table was first seen empty (time.time()), polled read-only; None if the
    store has no such table or it did not empty before ``deadline`` (monotonic)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        while time.monotonic() < deadline:
            try:
                (count,) = connection.execute("SELECT COUNT(*) FROM inbox").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None
                count = -1   # locked for a moment: look again
            if count == 0:
                return time.time()
            time.sleep(0.02)
        return None
    finally:
        connection.close()


def processed(db: Path, load: dict) -> float | None:
    """Events per second from the load's first request until the inbox was empty."""
    empty = inbox_empty(db, time.monotonic() + DEADLINE)
    return None if empty is None else load["events"] / max(empty - load["started_at"], 1e-9)


def server_cpu(group: int) -> float:
    """CPU seconds (user and system) used so far by every process of the server's process group: gunicorn's
    master, its server processes and the background process."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue   # gone meanwhile
        if int(fields[2]) == group:   # the pgrp field
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(variant: Variant, workers: int, args, sink: str | None) -> dict:
    """Start the server in a fresh folder, run the three loads, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config(folder, None if variant.bare else variant.intake, sink if variant.processes else None)
        process, url = start_server(folder, variant, workers, args.threads)
        try:
            run_generator(url, "--events", "2000", "--batch", str(args.batch), "--senders", "2")   # warm up
            if variant.processes:
                inbox_empty(folder / "bench.db", time.monotonic() + DEADLINE)
            batch = run_generator(url, "--events", str(args.events), "--batch", str(args.batch),
                                  "--senders", str(args.senders))
            batch_processed = processed(folder / "bench.db", batch) if variant.processes else None
            before = server_cpu(process.pid)
            if args.track_client == "wrk":
                track = wrk_track(url, args.track_seconds, args.clients)
            else:
                track = run_generator(url, "--mode", "track", "--events", str(args.track_events),
                                      "--clients", str(args.clients))
            track_cpu = (server_cpu(process.pid) - before) / max(track["events"], 1)
            track_processed = processed(folder / "bench.db", track) if variant.processes else None
            single = run_generator(url, "--mode", "single", "--single", str(args.single))
        finally:
            stop_server(process)
    for load in (batch, track):
        if load["failures"]:
            print(f"{variant.name}, {workers} processes: failures {load['failures']}", file=sys.stderr)
    return {"batch": batch["events_per_second"], "batch_p50": batch["request_p50_ms"],
            "track": track["events_per_second"], "p50": single["p50_ms"], "p95": single["p95_ms"],
            "p99": single["p99_ms"], "batch_processed": batch_processed, "track_processed": track_processed,
            "track_cpu_us": 1e6 * track_cpu}


def median(rounds: list[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if r[key] is not None]
    return statistics.median(values) if values else None


def ratios(top: list[dict], bottom: list[dict], key: str) -> list[float]:
    """Round by round: the two servers ran one after the other, so they shared that moment's noise."""
    return [a[key] / b[key] for a, b in zip(top, bottom)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000, help="events per /v1/batch load")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request (analytics-python: up to 100)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent connections of the /v1/batch load")
    parser.add_argument("--track-events", type=int, default=16_000,
                        help="events per /v1/track load (4 s at the fastest server: shorter runs were too noisy)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the /v1/track load")
    parser.add_argument("--track-client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                        help="the /v1/track load generator: wrk (apt-get install wrk; the default when installed) "
                             "or this script's Python threads, which take about 190 us of the shared CPU per call")
    parser.add_argument("--track-seconds", type=float, default=8.0, help="how long wrk sends /v1/track")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="server processes to try")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--single", type=int, default=500, help="sequential /v1/track calls for the latency figure")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server; figures are medians")
    parser.add_argument("--against", metavar="REF", help="also run the server from this git ref (e.g. 5143c2e)")
    parser.add_argument("--intake", metavar="MODE", action="append",
                        help=f"server.intake mode to measure, repeatable ('{DEFAULT}': no key; the default)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-app baseline")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        result = (generate(args.generate, args.events, args.batch, args.senders) if args.mode == "batch"
                  else track_clients(args.generate, args.events, args.clients) if args.mode == "track"
                  else single_latency(args.generate, args.single))
        print(json.dumps(result))
        return

    modes = args.intake or [DEFAULT]
    with checkout(args.against) if args.against else _nothing() as old_tree:
        variants = [] if args.no_bare else [Variant("bare app (orjson only)", ROOT, bare=True)]
        for mode in modes:
            variants.append(Variant("eventmap" if mode == DEFAULT else f"eventmap, intake: {mode}", ROOT,
                                    intake=None if mode == DEFAULT else mode))
            if mode == "queue":   # also with its processor in the same two cores, delivering to a sink
                variants.append(Variant("eventmap, intake: queue, processed alongside", ROOT, intake=mode,
                                        processes=True))
        if old_tree is not None:
            variants.append(Variant(f"eventmap@{args.against}", old_tree))
        with _sink() if any(v.processes for v in variants) else _nothing() as sink:
            run(variants, args, sink)


def run(variants: list[Variant], args, sink: str | None) -> None:
    track = (f"{args.clients} connections of wrk for {args.track_seconds:g}s" if args.track_client == "wrk" else
             f"{args.track_events} events from {args.clients} Python client threads")
    print(f"eventmap serve ingestion: /v1/batch {args.events} events in batches of {args.batch} from {args.senders} "
          f"connections; /v1/track from {track}; load generators in other processes; 4 destinations, SQLite synchronous=FULL, {os.cpu_count()} cores; medians of "
          f"{args.rounds} interleaved rounds\n")
    print("| server processes | server | events/s on /v1/batch | batch request p50 | events/s on /v1/track, "
          f"{args.clients} clients | server CPU per /v1/track call | /v1/track p50 | p95 | p99 "
          "| processed events/s (batch, track) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    notes: dict[str, str] = {}
    table: dict[int, dict[str, list[dict]]] = {}
    for workers in args.workers:
        results: dict[str, list[dict]] = {v.name: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                if variant.name in notes:
                    continue
                try:
                    results[variant.name].append(measure(variant, workers, args, sink))
                except ServerRefused as refused:
                    if variant.intake is None:
                        raise SystemExit(f"{variant.name}: {refused}") from None
                    notes[variant.name] = _refusal(str(refused))
        table[workers] = results
        for variant in variants:
            rounds = results[variant.name]
            if not rounds:
                print(f"| {workers} | {variant.name} | skipped: see below | | | | | | | |", flush=True)
                continue
            shown = {key: median(rounds, key) for key in rounds[0]}
            done = ", ".join("-" if shown[k] is None else f"{shown[k]:,.0f}" for k in ("batch_processed", "track_processed"))
            print(f"| {workers} | {variant.name} | {shown['batch']:,.0f} | {shown['batch_p50']:.0f} ms | "
                  f"{shown['track']:,.0f} | {shown['track_cpu_us']:,.0f} µs | {shown['p50']:.1f} ms | "
                  f"{shown['p95']:.1f} ms | {shown['p99']:.1f} ms | "
                  f"{done if variant.processes else ''} |", flush=True)
    for name, note in notes.items():
        print(f"\n{name}: skipped, the server refused it: {note}")
    print_ratios(variants, table, args)

    with tempfile.TemporaryDirectory() as tmp:
        steps = breakdown(Path(tmp), batch=args.batch)
    total = sum(steps.values())
    print(f"\nOne process's work per event, in-process, batches of {args.batch}:\n")
    print("| step | µs per event | share |")
    print("| --- | --- | --- |")
    for step, micros in steps.items():
        print(f"| {step} | {micros:.0f} | {100 * micros / total:.0f}% |")


def print_ratios(variants: list[Variant], table: dict[int, dict[str, list[dict]]], args) -> None:
    """Each target as a ratio of two servers measured in the same rounds: median, then every round's."""
    bare = next((v for v in variants if v.bare), None)
    old = next((v for v in variants if v.name.startswith("eventmap@")), None)
    new = [v for v in variants if not v.bare and v is not old]
    pairs = [(f"{v.name} / bare, /v1/batch", v, bare, "batch", "at least 0.25") for v in new if bare]
    if old:
        pairs += [(f"{v.name} / {old.name}, /v1/track {args.clients} clients", v, old, "track", "at least 5")
                  for v in new]
        pairs += [(f"{v.name} / {old.name}, /v1/batch", v, old, "batch", "") for v in new]
    if not pairs:
        return
    print("\n| server processes | ratio | median | each round | target |")
    print("| --- | --- | --- | --- | --- |")
    for workers, results in table.items():
        for label, top, bottom, key, target in pairs:
            each = ratios(results[top.name], results[bottom.name], key)
            if each:
                print(f"| {workers} | {label} | {statistics.median(each):.2f} | "
                      f"{', '.join(f'{r:.2f}' for r in each)} | {target} |")


def _refusal(log: str) -> str:
    """The line of the server's log that names the problem (the last one, where the error is printed)."""
    lines = [line for line in log.splitlines() if line.strip()]
    return next((line for line in lines if "intake" in line), lines[-1] if lines else "(no output)")


@contextmanager
def _nothing():
    yield None


@contextmanager
def _sink():
    """bench/sink.py in its own process: where the destinations deliver when the server processes its inbox."""
    from sink import serve_sink  # bench/ is on sys.path when this file runs as a script

    ports: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve_sink, args=(ports,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=10)}"
    finally:
        process.terminate()
        process.join(10)


if __name__ == "__main__":
    main()
