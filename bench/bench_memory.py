"""Whether ``eventmap deliver`` holds its memory flat however long the backlog: peak RSS at 1k and at 100k.

    python bench/bench_memory.py [--small 1000] [--large 100000] [--seconds 20] [--rounds 3]

Issue 16: a backlog of queued deliveries must not cost memory in proportion
to its length (a worker leases a bounded batch, never the whole queue). Fills a
SQLite store through the public API (``Intake.accept``, 500 events per
transaction, as ``eventmap enqueue`` does) with ``--small`` and with
``--large`` events for one destination (Segment, its base_url a local sink in
a second process, bench/sink.py), so as many queued deliveries. Then runs the
real ``eventmap deliver`` in a child process on a copy of each store until it
has delivered ``--small`` (the same work on both backlogs, so only the backlog's
size differs) and reads the child's peak resident memory (VmHWM in
/proc/PID/status) just before stopping it; its anonymous memory (RssAnon: the
heap, not SQLite's file pages) is sampled too. Runs interleave (small, large,
small, large, ...); prints each size's medians and the large/small ratio per
round (target: about 1.0). A third run works through the large backlog for
``--seconds`` and gives its anonymous memory after 2s and at its peak: whether
memory grows with the work done.
Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_ingest import stop_server  # noqa: E402
from sink import serve_sink  # noqa: E402

from engine import Engine  # noqa: E402
from engine.intake import Intake  # noqa: E402
from engine.load.config import load_config, routes_from_config  # noqa: E402
from engine.store import open_store  # noqa: E402

CHUNK = 500          # events per transaction while filling, as eventmap enqueue
SAMPLE = 0.2         # seconds between readings of the child's anonymous memory
EARLY = 2.0          # seconds: the anonymous memory then tells a cost of the backlog from a cost of the work done


def config(folder: Path, sink: str) -> Path:
    path = folder / "eventmap.yaml"
    path.write_text(f"destinations:\n  segment: {{settings: {{write_key: downstream, base_url: \"{sink}\"}}}}\n"
                    "storage: sqlite:///bench.db\n", encoding="utf-8")
    return path


def fill(folder: Path, count: int) -> Path:
    """A store with ``count`` queued deliveries, closed (its WAL folded in) so that it can be copied."""
    loaded, problems = load_config(folder / "eventmap.yaml")
    assert loaded is not None and not problems, problems
    engine = Engine()
    with open_store("sqlite:///bench.db", base=folder) as store:
        intake = Intake(engine, routes_from_config(engine, loaded), store, dedupe_window=0)
        for start in range(0, count, CHUNK):
            batch = [{"type": "track", "event": "Order Completed", "userId": f"user-{i % 500}",
                      "messageId": str(uuid.uuid4()), "timestamp": "2026-11-23T10:00:00Z",
                      "properties": {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR"}}
                     for i in range(start, min(start + CHUNK, count))]
            intake.accept(batch)
        queued = store.counts(time.time())["segment"].get("queued", 0)
    assert queued == count, f"expected {count} queued deliveries, the store has {queued}"
    return folder / "bench.db"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def delivered(work: Path) -> int:
    with open_store("sqlite:///bench.db", base=work, create=False) as store:
        return store.counts(time.time()).get("segment", {}).get("delivered", 0)


def deliver(source: Path, folder: Path, seconds: float, work: int | None = None) -> dict:
    """``eventmap deliver`` on a copy of ``source`` for ``seconds``, or until it has delivered ``work``: its peak
    RSS and the deliveries it made. Stopping both backlogs after the same work compares what the backlog's size
    costs alone; the large backlog's run for the whole time shows whether memory grows with the work done."""
    run = folder / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(folder / "eventmap.yaml", run / "eventmap.yaml")
    shutil.copy(source, run / "bench.db")
    with open(run / "deliver.log", "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "engine", "deliver", "--config", "eventmap.yaml"], cwd=run,
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    anon, early = 0, None
    try:
        began = time.monotonic()
        while time.monotonic() < began + seconds:   # the kernel keeps the peak of all of RSS; the heap's is sampled
            time.sleep(SAMPLE)
            if child.poll() is not None:
                raise SystemExit(f"eventmap deliver exited early:\n{(run / 'deliver.log').read_text()}")
            anon = max(anon, status_kib(child.pid, "RssAnon"))
            if early is None and time.monotonic() >= began + EARLY:
                early = anon
            if work is not None and delivered(run) >= work:
                break
        peak, now = status_kib(child.pid, "VmHWM"), status_kib(child.pid, "VmRSS")
    finally:
        stop_server(child)
    with open_store("sqlite:///bench.db", base=run) as store:
        counts = store.counts(time.time())["segment"]
    return {"peak_mib": peak / 1024, "rss_mib": now / 1024, "anon_mib": anon / 1024,
            "early_mib": (early or anon) / 1024, "delivered": counts.get("delivered", 0),
            "left": counts.get("queued", 0) + counts.get("retrying", 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1_000, help="queued deliveries in the small backlog")
    parser.add_argument("--large", type=int, default=100_000, help="queued deliveries in the large backlog")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long eventmap deliver runs on each")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    sink = multiprocessing.Process(target=serve_sink, args=(ports,), daemon=True)
    sink.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}"
        with tempfile.TemporaryDirectory() as tmp:
            folders = {size: Path(tmp) / str(size) for size in (args.small, args.large)}
            stores = {}
            for size, folder in folders.items():
                folder.mkdir()
                config(folder, url)
                began = time.perf_counter()
                stores[size] = fill(folder, size)
                print(f"filled {size:,} queued deliveries in {time.perf_counter() - began:.1f}s", file=sys.stderr)
            results: dict[int, list[dict]] = {size: [] for size in folders}
            long_runs: list[dict] = []
            for _ in range(args.rounds):
                for size, folder in folders.items():   # the same work on each backlog: all of the small one
                    results[size].append(deliver(stores[size], folder, args.seconds, work=args.small))
                long_runs.append(deliver(stores[args.large], folders[args.large], args.seconds))
    finally:
        sink.terminate()
        sink.join(10)

    print(f"eventmap deliver on a SQLite store of queued Segment deliveries to a local sink, stopped once it has "
          f"delivered {args.small:,} (the same work on both backlogs), medians of {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} cores\n")
    print("| queued deliveries | peak RSS (VmHWM) | peak anonymous RSS (sampled) | delivered | still queued |")
    print("| --- | --- | --- | --- | --- |")
    for size, runs in results.items():
        print(f"| {size:,} | {statistics.median(r['peak_mib'] for r in runs):.1f} MiB | "
              f"{statistics.median(r['anon_mib'] for r in runs):.1f} MiB | "
              f"{statistics.median(r['delivered'] for r in runs):,.0f} | {statistics.median(r['left'] for r in runs):,.0f} |")
    each = [large["peak_mib"] / small["peak_mib"] for small, large in zip(results[args.small], results[args.large])]
    print(f"\npeak RSS, backlog {args.large:,} / {args.small:,}, same work: {statistics.median(each):.2f} "
          f"(each round: {', '.join(f'{r:.2f}' for r in each)}; target: about 1.0)")
    growth = [r["anon_mib"] / r["early_mib"] for r in long_runs]
    print(f"\nworking through the {args.large:,} backlog for {args.seconds:g}s: "
          f"{statistics.median(r['delivered'] for r in long_runs):,.0f} delivered; anonymous RSS after {EARLY:g}s "
          f"{statistics.median(r['early_mib'] for r in long_runs):.1f} MiB, peak "
          f"{statistics.median(r['anon_mib'] for r in long_runs):.1f} MiB (x{statistics.median(growth):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
