"""What the storable check (engine/validate/storable.py) adds to intake, per event.

    python bench/bench_storable.py [--rounds 15] [--repeat 2000]

Times, interleaved in the same run, three things on the shipped sample events:
the storable check, the Segment schema check intake already runs on every event
(the baseline), and ``Intake.decide`` as a whole (check, schema, routing to the
four shipped destinations; no store). Prints a Markdown table with the
microseconds per event of the best round and the check's cost as a share of the other two.
Bounded in count: rounds x repeat x samples calls of each.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import Engine  # noqa: E402
from engine.intake import Intake  # noqa: E402
from engine.validate import storable  # noqa: E402

SETTINGS = {"planhat": {"tenant_token": "t"}, "richpanel": {"api_key": "k", "api_secret": "s"},
            "crisp": {"api_key": "id:key", "website_id": "w"}, "segment": {"write_key": "downstream"}}


def per_event(call, events: list, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for event in events:
            call(event)
    return (time.perf_counter() - started) / (repeat * len(events)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    engine = Engine()
    events = [json.loads(line) for line in (ROOT / "fixtures" / "sample-events.jsonl").read_text().splitlines() if line]
    events = [e for e in events if not engine.validate(e)[0]]
    intake = Intake(engine, [engine.route(name, settings) for name, settings in SETTINGS.items()], store=None,
                    fill_message_id=False)
    timings: dict[str, list[float]] = {"storable check": [], "schema check (baseline)": [], "Intake.decide": []}
    calls = {"storable check": storable.problems, "schema check (baseline)": engine.validate,
             "Intake.decide": intake.decide}
    for _ in range(args.rounds):   # interleaved: load on the machine hits each alike
        for name, call in calls.items():
            timings[name].append(per_event(call, events, args.repeat))
    best = {name: min(values) for name, values in timings.items()}  # the least disturbed round: the machine is shared
    check = best["storable check"]
    print(f"{len(events)} sample events, {args.rounds} interleaved rounds of {args.repeat} each\n")
    print("| what | µs per event (best round) | storable check as a share of it |")
    print("| --- | ---: | ---: |")
    for name, value in best.items():
        print(f"| {name} | {value:.2f} | {check / value:.0%} |")


if __name__ == "__main__":
    main()
