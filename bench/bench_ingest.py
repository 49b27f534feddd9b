"""How fast ``eventmap serve`` accepts events, durably: throughput on /v1/batch and latency of one /v1/track.

    python bench/bench_ingest.py [--events 40000] [--batch 100] [--senders 8] [--workers 2 4]

Starts a real server (``--intake-only``: accept and store, no delivery, so the
figure is ingestion alone) on a free localhost port with four destinations
(four delivery rows per event) and the SQLite store at synchronous=FULL, the
default: every 200 is on disk. The load comes from a second process
(this script with ``--generate``), so client and server do not share an
interpreter. Events are the shipped samples with fresh message ids, in
batches as analytics-python sends them. Prints a Markdown table; the README
records one run. Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
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


def config(folder: Path) -> Path:
    path = folder / "eventmap.yaml"
    path.write_text(textwrap.dedent(f"""\
        sources:
          bench: {{write_key: {WRITE_KEY}}}
        destinations:
          planhat: {{settings: {{tenant_token: t}}}}
          richpanel: {{settings: {{api_key: k, api_secret: s}}}}
          crisp: {{settings: {{api_key: "id:key", website_id: w}}}}
          segment: {{settings: {{write_key: downstream}}}}
        storage: sqlite:///bench.db
        """), encoding="utf-8")
    return path


def start_server(folder: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    log = open(folder / f"server-{workers}.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--config", "eventmap.yaml", "--port", "0",
                                "--workers", str(workers), "--threads", str(threads), "--intake-only"],
                               cwd=folder, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = re.search(r"listening on (http://\S+)", (folder / f"server-{workers}.log").read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise SystemExit((folder / f"server-{workers}.log").read_text())
        time.sleep(0.05)
    raise SystemExit("the server did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def events(n: int) -> list[dict]:
    return [{**SAMPLES[i % len(SAMPLES)], "messageId": str(uuid.uuid4())} for i in range(n)]


# --------------------------------------------------------------------------- the load generator (second process)

def generate(url: str, total: int, batch: int, senders: int) -> dict:
    """``senders`` connections post batches until ``total`` events were acknowledged (or the deadline)."""
    per_sender = total // senders // batch
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(senders + 1)
    deadline = time.monotonic() + DEADLINE

    def sender():
        session = requests.Session()
        bodies = [json.dumps({"batch": events(batch), "sentAt": "2024-05-02T09:20:00Z"}) for _ in range(per_sender)]
        start_gate.wait()
        for body in bodies:
            if time.monotonic() > deadline:
                return
            began = time.perf_counter()
            answer = session.post(url + "/v1/batch", data=body, auth=(WRITE_KEY, ""),
                                  headers={"Content-Type": "application/json"}, timeout=60)
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    accepted = (len(latencies) - len(failures)) * batch
    return {"events": accepted, "seconds": elapsed, "events_per_second": accepted / elapsed,
            "batch_p50_ms": 1000 * statistics.median(latencies), "failures": failures[:3]}


def single_latency(url: str, count: int) -> dict:
    """One connection, one /v1/track at a time: what a server-side SDK in sync mode waits per call."""
    session = requests.Session()
    took = []
    for event in events(count):
        event = {**event, "type": "track", "event": "Bench", "userId": "u-1"}
        began = time.perf_counter()
        answer = session.post(url + "/v1/track", json=event, auth=(WRITE_KEY, ""), timeout=30)
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
                          timeout=DEADLINE + 60)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request (analytics-python: up to 100)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent connections of the load generator")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="server processes to try")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--single", type=int, default=500, help="sequential /v1/track calls for the latency figure")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        result = (generate(args.generate, args.events, args.batch, args.senders) if args.mode == "batch"
                  else single_latency(args.generate, args.single))
        print(json.dumps(result))
        return

    print(f"eventmap serve ingestion: {args.events} events in batches of {args.batch} from {args.senders} connections "
          f"(load generator in a second process), 4 destinations, SQLite synchronous=FULL, {os.cpu_count()} cores\n")
    print("| server processes | events/s on /v1/batch | batch request p50 | /v1/track p50 | p95 | p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config(folder)
            process, url = start_server(folder, workers, args.threads)
            try:
                run_generator(url, "--events", "2000", "--batch", str(args.batch), "--senders", "2")   # warm up
                batch = run_generator(url, "--events", str(args.events), "--batch", str(args.batch),
                                      "--senders", str(args.senders))
                single = run_generator(url, "--mode", "single", "--single", str(args.single))
            finally:
                stop_server(process)
        if batch["failures"]:
            print(f"failures with {workers} processes: {batch['failures']}", file=sys.stderr)
        print(f"| {workers} | {batch['events_per_second']:,.0f} | {batch['batch_p50_ms']:.0f} ms | "
              f"{single['p50_ms']:.1f} ms | {single['p95_ms']:.1f} ms | {single['p99_ms']:.1f} ms |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        steps = breakdown(Path(tmp), batch=args.batch)
    total = sum(steps.values())
    print(f"\nOne process's work per event, in-process, batches of {args.batch}:\n")
    print("| step | µs per event | share |")
    print("| --- | --- | --- |")
    for step, micros in steps.items():
        print(f"| {step} | {micros:.0f} | {100 * micros / total:.0f}% |")


if __name__ == "__main__":
    main()
