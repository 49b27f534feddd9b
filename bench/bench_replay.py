"""Whether ``eventmap replay`` holds its memory flat however many events it replays: peak RSS at 100k and 1M.

    python bench/bench_replay.py [--small 100000] [--large 1000000] [--rounds 2] [--dry-run]

Issue 27: replaying a million archived events must stream (the archive read by
key, a chunk at a time, each chunk's deliveries written with the replay's
progress), never hold the range in memory. Fills a SQLite store through the
public API (``Store.accept``, 1,000 events per transaction) with ``--small``
and with ``--large`` archived events and no deliveries (as an archive holds
them once their deliveries are pruned), then runs the real ``eventmap replay``
over all of each in a child process, on a fresh copy of its store each round,
to one destination (Segment: rendered, then queued; nothing is sent). The
child's peak resident memory comes from the kernel when it exits (``wait4``'s
ru_maxrss); its anonymous memory (RssAnon: the heap, not SQLite's file pages)
is sampled meanwhile. Runs interleave (small, large, small, large, ...);
prints each size's medians, events per second, and the large/small ratio of
peak RSS per round (target: about 1.0, while the work grows tenfold).
``--dry-run`` measures ``eventmap replay --dry-run`` instead (output to /dev/null).
Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
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
from engine.durations import describe_time  # noqa: E402
from engine.store import NewEvent, open_store  # noqa: E402

CHUNK = 1000         # events per transaction while filling
SAMPLE = 0.2         # seconds between readings of the child's anonymous memory
LIMIT = 3600.0       # seconds one replay may take before the benchmark gives up


def config(folder: Path) -> Path:
    path = folder / "eventmap.yaml"
    path.write_text("destinations:\n  segment: {settings: {write_key: downstream, base_url: \"http://127.0.0.1:9\"}}\n"
                    "storage: sqlite:///bench.db\n", encoding="utf-8")
    return path


def fill(folder: Path, count: int) -> tuple[float, float]:
    """A store of ``count`` archived events, closed (its WAL folded in) so that it can be copied; the range
    that holds them all."""
    began = time.time()
    with open_store("sqlite:///bench.db", base=folder) as store:
        for start in range(0, count, CHUNK):
            events = []
            for i in range(start, min(start + CHUNK, count)):
                message_id = str(uuid.uuid4())
                events.append(NewEvent({"type": "track", "event": "Order Completed", "userId": f"user-{i % 500}",
                                        "messageId": message_id, "timestamp": "2026-11-23T10:00:00Z",
                                        "properties": {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR"}},
                                       message_id, [], source="web", archive=True))
            store.accept(events, time.time())
        assert store.archive_bounds(began - 1, time.time() + 1) is not None
    return began - 1, time.time() + 1


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:   # it has just exited
        return 0
    return 0


def replay(folder: Path, window: tuple[float, float], dry_run: bool) -> dict:
    """``eventmap replay`` over the whole of a fresh copy of the store: its peak RSS, time and events."""
    run = folder / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(folder / "eventmap.yaml", run / "eventmap.yaml")
    shutil.copy(folder / "bench.db", run / "bench.db")
    args = [sys.executable, "-m", "engine", "replay", "--config", "eventmap.yaml", "--since", describe_time(window[0]),
            "--until", describe_time(window[1]), *(["--dry-run"] if dry_run else [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(run / "replay.out", "wb") as out, open(run / "replay.log", "wb") as log:
        began = time.perf_counter()
        child = subprocess.Popen(args, cwd=run, stdout=subprocess.DEVNULL if dry_run else out, stderr=log,
                                 stdin=subprocess.DEVNULL, env=env)
        anon = 0
        while True:   # wait4: the kernel's peak RSS of this child alone, once it has exited
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - began > LIMIT:
                child.kill()
                raise SystemExit(f"eventmap replay took over {LIMIT:g}s")
            anon = max(anon, status_kib(child.pid, "RssAnon"))
            time.sleep(SAMPLE)
        seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise SystemExit(f"eventmap replay failed ({child.returncode}):\n{(run / 'replay.log').read_text()}")
    peak = usage.ru_maxrss   # KiB on Linux
    with open_store("sqlite:///bench.db", base=run, create=False) as store:
        [done] = store.replays(limit=1) if not dry_run else [None]
        queued = store.counts(time.time()).get("segment", {}).get("queued", 0)
    events = done.events if done is not None else None
    shutil.rmtree(run, ignore_errors=True)
    return {"peak_mib": peak / 1024, "anon_mib": anon / 1024, "seconds": seconds, "events": events, "queued": queued}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100_000, help="archived events in the small store")
    parser.add_argument("--large", type=int, default=1_000_000, help="archived events in the large store")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="measure eventmap replay --dry-run instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folders = {size: Path(tmp) / str(size) for size in (args.small, args.large)}
        windows = {}
        for size, folder in folders.items():
            folder.mkdir()
            config(folder)
            began = time.perf_counter()
            windows[size] = fill(folder, size)
            print(f"filled {size:,} archived events in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        results: dict[int, list[dict]] = {size: [] for size in folders}
        for number in range(args.rounds):
            for size, folder in folders.items():
                result = replay(folder, windows[size], args.dry_run)
                results[size].append(result)
                print(f"round {number + 1}: {size:,}: {result}", file=sys.stderr)

    mode = "eventmap replay --dry-run" if args.dry_run else "eventmap replay (rendered and queued, one destination)"
    print(f"{mode} over every event of a SQLite archive, a fresh copy each run, medians of {args.rounds} interleaved "
          f"rounds, {os.cpu_count()} cores\n")
    print("| archived events | peak RSS (ru_maxrss) | peak anonymous RSS (sampled) | seconds | events/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        print(f"| {size:,} | {statistics.median(r['peak_mib'] for r in runs):.1f} MiB | "
              f"{statistics.median(r['anon_mib'] for r in runs):.1f} MiB | {seconds:,.1f} | {size / seconds:,.0f} |")
    for runs in results.values():
        for r in runs:
            assert r["events"] in (None, args.small, args.large), r
    each = [large["peak_mib"] / small["peak_mib"] for small, large in zip(results[args.small], results[args.large])]
    anon = [large["anon_mib"] / small["anon_mib"] for small, large in zip(results[args.small], results[args.large])]
    print(f"\npeak RSS, {args.large:,} / {args.small:,} events: {statistics.median(each):.2f} (each round: "
          f"{', '.join(f'{r:.2f}' for r in each)}; anonymous: {', '.join(f'{r:.2f}' for r in anon)}; target: about 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
