"""What a tracking plan costs intake per event, and that a plan of 500 events costs what a plan of 5 does.

    python bench/bench_plan.py [--rounds 15] [--repeat 400]

Writes two plan files (5 and 500 track events, each with a JSON Schema like the
example plan's Order Completed: required keys, types, an enum, a pattern, an array
of objects), loads them with ``engine.load.plan`` as ``eventmap serve`` does, and
times ``Intake.decide`` (the Segment check, the plan check, routing to the four
shipped destinations; no store) on the same events, interleaved in one run:

  * no plan (the baseline), plan of 5, plan of 500, for events that follow the plan;
  * plan of 5 and plan of 500 in warn mode for events that break it (explained and recorded).

The traffic uses 5 event names that both plans have, so only the plan's size differs.
Prints a Markdown table of microseconds per event (median of the rounds) and the ratios.
Bounded in count: rounds x repeat x events calls of each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import Engine  # noqa: E402
from engine.intake import Intake  # noqa: E402
from engine.load.plan import load_plan  # noqa: E402
from engine.validate.plan import SourcePlan  # noqa: E402

SETTINGS = {"planhat": {"tenant_token": "t"}, "richpanel": {"api_key": "k", "api_secret": "s"},
            "crisp": {"api_key": "id:key", "website_id": "w"}, "segment": {"write_key": "downstream"}}
NAMES = [f"Event {i:03d}" for i in range(500)]
TRAFFIC = [NAMES[0], NAMES[1], NAMES[2], NAMES[3], NAMES[4]]   # in both plans


def schema(i: int) -> dict:
    return {"type": "object", "required": ["order_id", "total", "currency"],
            "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0},
                           "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                           "channel": {"enum": ["web", "app", f"partner-{i}"]},
                           "products": {"type": "array", "items": {
                               "type": "object", "required": ["product_id", "price"],
                               "properties": {"product_id": {"type": "string"},
                                              "price": {"type": "number", "minimum": 0},
                                              "quantity": {"type": "integer", "minimum": 1}}}}}}


def write_plan(folder: Path, size: int) -> Path:
    path = folder / f"plan-{size}.yaml"
    path.write_text(yaml.safe_dump({"name": f"bench-{size}", "events": {name: {"properties": schema(i)}
                                                                        for i, name in enumerate(NAMES[:size])}}),
                    encoding="utf-8")
    return path


def event(name: str, n: int, good: bool) -> dict:
    properties = {"order_id": f"o-{n}", "total": 54.9, "currency": "EUR", "channel": "web",
                  "products": [{"product_id": "p-1", "price": 19.95, "quantity": 2},
                               {"product_id": "p-2", "price": 10, "quantity": 1}]}
    if not good:
        properties["total"], properties["currency"] = "54.90", "eur"
    return {"type": "track", "event": name, "userId": f"u{n}", "messageId": f"m{n}",
            "timestamp": "2024-05-02T09:20:00.000Z", "properties": properties}


def per_event(intake: Intake, events: list, repeat: int) -> float:
    decide = intake.decide
    started = time.perf_counter()
    for _ in range(repeat):
        for item in events:
            decide(item, "web")
    return (time.perf_counter() - started) / (repeat * len(events)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=400)
    args = parser.parse_args()
    engine = Engine()
    routes = [engine.route(name, settings) for name, settings in SETTINGS.items()]
    with tempfile.TemporaryDirectory() as folder:
        plans = {}
        for size in (5, 500):
            started = time.perf_counter()
            plans[size], problems = load_plan(write_plan(Path(folder), size))
            assert plans[size] is not None, problems
            print(f"plan of {size} events: loaded and compiled in {(time.perf_counter() - started) * 1000:.0f} ms")

    def intake(size: int | None, invalid: str = "block") -> Intake:
        found = {} if size is None else {"web": SourcePlan("web", plans[size], "block", invalid)}
        return Intake(engine, routes, store=None, fill_message_id=False, plans=found)

    good = [event(name, n, True) for n, name in enumerate(TRAFFIC * 4)]
    bad = [event(name, n, False) for n, name in enumerate(TRAFFIC * 4)]
    cases = {"no plan (baseline)": (intake(None), good), "plan of 5": (intake(5), good),
             "plan of 500": (intake(500), good), "plan of 5, events that break it (warn)": (intake(5, "warn"), bad),
             "plan of 500, events that break it (warn)": (intake(500, "warn"), bad)}
    for name, (chosen, events) in cases.items():   # the verdicts are what the rows say they are
        verdicts = [chosen.decide(e, "web") for e in events]
        assert all(not errors for _, errors in verdicts), name
        assert all(bool(new.violations) == ("break" in name) for new, _ in verdicts), name
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):   # interleaved: load on the shared machine hits each alike
        for name, (chosen, events) in cases.items():
            timings[name].append(per_event(chosen, events, args.repeat))
    median = {name: statistics.median(values) for name, values in timings.items()}
    base = median["no plan (baseline)"]
    print(f"\n{len(good)} events a pass, {args.rounds} interleaved rounds of {args.repeat} passes; "
          f"medians of the rounds\n")
    print("| Intake.decide per event | µs | against no plan | plan of 500 against plan of 5 |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in median.items():
        against = ""
        if name == "plan of 500":
            against = f"{value / median['plan of 5']:.2f}x"
        elif name.startswith("plan of 500,"):
            against = f"{value / median['plan of 5, events that break it (warn)']:.2f}x"
        print(f"| {name} | {value:.1f} | {value / base:.2f}x | {against} |")
    print()
    for big, small in (("plan of 500", "plan of 5"), ("plan of 500, events that break it (warn)",
                                                      "plan of 5, events that break it (warn)")):
        ratios = sorted(a / b for a, b in zip(timings[big], timings[small]))   # each round's pair ran back to back
        quarter = len(ratios) // 4
        print(f"{big} / {small}, round by round: median {statistics.median(ratios):.2f}x, middle half "
              f"{ratios[quarter]:.2f}x to {ratios[-1 - quarter]:.2f}x")


if __name__ == "__main__":
    main()
