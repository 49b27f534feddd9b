"""What an outage costs the vendor: requests while it is down, and requests to catch up after.

Run: python bench/bench_outage.py [--events 200] [--down 10]

A stand-in vendor on localhost (tests/vendor_server.py) answers 500 for ``--down`` seconds, then 200.
``--events`` Segment track events are accepted into a scratch SQLite outbox first; one delivery
worker (the real Runner, real clock, Segment's batch endpoint) delivers them. Printed: requests
while the vendor was down and their rate, requests after it recovered, and the targets of issue 16
(at most one a second while down; at most ceil(events / the largest batch) + 2 after).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from vendor_server import Answer, VendorServer  # noqa: E402

from engine import Engine  # noqa: E402
from engine.deliver import HttpClient, Runner, destination_workers  # noqa: E402
from engine.intake import Intake  # noqa: E402
from engine.load.delivery_options import DeliveryOptions  # noqa: E402
from engine.store import DELIVERED, open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--down", type=float, default=10.0)
    args = parser.parse_args()
    engine = Engine()
    with VendorServer() as vendor, tempfile.TemporaryDirectory() as folder, \
            open_store(f"sqlite:///{folder}/outbox.db") as store:
        route = engine.route("segment", {"write_key": "bench-key", "base_url": vendor.url})
        Intake(engine, [route], store).accept([
            {"type": "track", "event": "Bench", "userId": f"u{n}", "messageId": f"m{n}",
             "timestamp": "2026-11-29T10:00:00Z"} for n in range(args.events)])
        sent: list[float] = []
        started = time.monotonic()
        recovered_at = started + args.down

        def answer(received):
            sent.append(time.monotonic())
            return Answer(500, {"error": "down"}) if time.monotonic() < recovered_at else Answer()

        vendor.answer(answer)
        stop = threading.Event()
        options = DeliveryOptions()
        workers = destination_workers([route], store, options, owner="bench", stop=stop, client=HttpClient())
        runner = Runner(workers, store, owner="bench", stop=stop, idle_wait=0.2)
        runner.start()
        deadline = recovered_at + 60
        while time.monotonic() < deadline:
            counts = store.counts(time.time()).get("segment", {})
            if counts.get(DELIVERED, 0) == args.events:
                break
            time.sleep(0.1)
        stop.set()
        runner.join()
        down = [at for at in sent if at < recovered_at]
        after = [at for at in sent if at >= recovered_at]
        largest = route.destination.batching.max_events
        print(f"{args.events} events due, vendor down {args.down:g}s, then up (Segment, batches of up to {largest})")
        print("| measure | value | target |")
        print("| --- | ---: | ---: |")
        print(f"| requests while down | {len(down)} ({len(down) / args.down:.2f}/s) | at most {args.down:g} (1/s) |")
        print(f"| requests after recovery | {len(after)} | at most {math.ceil(args.events / largest) + 2} |")
        print(f"| delivered | {store.counts(time.time()).get('segment', {}).get(DELIVERED, 0)} | {args.events} |")


if __name__ == "__main__":
    main()
