"""How fast is rendering, next to the cheapest thing one could do with an event?

Run: python tests/benchmarks/bench_render.py [--events N]

Everything is measured in this one run on this machine, and reported as a ratio
to the baseline (a JSON round trip of the same event: parse + dump), so the
numbers compare across machines. It also measures what loading the YAML per
event would cost, which is why the engine compiles mappings once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine import Engine

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "planhat": {"tenant_token": "bench-token"},
    "richpanel": {"api_key": "bench-key", "api_secret": "bench-secret"},
    "crisp": {"api_key": "bench-id:bench-key", "website_id": "bench-site"},
    "segment": {"write_key": "bench-write-key"},
}


def sample_events() -> list[dict]:
    lines = (ROOT / "fixtures" / "sample-events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def per_second(work, events, repeat: int) -> float:
    """Events per second for ``work(event)``, best of three rounds to damp noise."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            for event in events:
                work(event)
        best = min(best, time.perf_counter() - start)
    return repeat * len(events) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events per round (default 3000)")
    args = parser.parse_args()
    events = sample_events()
    texts = [json.dumps(e) for e in events]
    repeat = max(1, args.events // len(events))
    engine = Engine(ROOT / "mappings")
    routes = [engine.route(name, settings) for name, settings in SETTINGS.items()]

    rows = [("baseline: json parse + dump", per_second(lambda t: json.dumps(json.loads(t)), texts, repeat))]
    rows.append(("validate against Segment schemas", per_second(engine.validate, events, repeat)))
    for route in routes:
        rows.append((f"validate + render {route.destination.slug}",
                     per_second(lambda e, r=route: engine.render_all(e, [r]), events, repeat)))
    rows.append(("validate + render all 4 destinations", per_second(lambda e: engine.render_all(e, routes), events, repeat)))
    reload_repeat = max(1, repeat // 50)
    rows.append(("load YAML per event + render all (what we avoid)",
                 per_second(lambda e: Engine(ROOT / "mappings"), events, reload_repeat)))

    baseline = rows[0][1]
    print(f"python {sys.version.split()[0]}, {len(events)} sample events x {repeat} rounds\n")
    print(f"{'':<52}{'events/s':>12}{'x baseline time':>18}")
    for label, rate in rows:
        print(f"{label:<52}{rate:>12,.0f}{baseline / rate:>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
