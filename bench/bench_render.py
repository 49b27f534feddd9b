"""How fast does eventmap turn events into requests, next to the same mappings written by hand?

Run from a clone, after ``pip install '.[test]'``:

    python bench/bench_render.py                 # the README's table (a few minutes)
    python bench/bench_render.py --smoke         # a tiny run, to check the script works

Everything is measured in this one run, on this machine, and reported as a
ratio to a baseline measured alongside it, so the numbers compare across
machines. Times are CPU seconds of this process (other programs on the machine
do not count); eventmap and its baseline run in back-to-back pairs and the
ratio is the median of the pairs' ratios.

1. Throughput: a seeded workload (track with ecommerce properties and
   products, identify with traits, page, group, alias; a fifth anonymous) as
   JSON Lines. eventmap parses each line, validates, routes, maps and
   serialises (Engine.render_all, Request.encoded_body). The baseline does the
   same work by hand (bench/handwritten.py): msgspec and orjson, the same compiled
   validator (jsonschema-rs on schemas/), the integrations check, dict code.
   Both must produce the same URLs and bodies: checked before timing.
2. Memory: peak RSS of a child process streaming 100,000 and 1,000,000
   events through the batch code path; it must not grow with the count.
3. Configuration scale: loading 300 destination files (the shipped ones
   copied under other names), and routing one event to 50 configured
   destinations against routing it to one.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema_rs
import msgspec
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import Engine  # noqa: E402
from engine.paths import SCHEMA_DIR  # noqa: E402
from engine import jsoncodec  # noqa: E402
from engine.validate.events import CALL_TYPES, _is_datetime  # noqa: E402
from handwritten import ACCEPTS, MAPPINGS, NAMES  # noqa: E402

SETTINGS = {
    "planhat": {"tenant_token": "bench-token"},
    "richpanel": {"api_key": "bench-key", "api_secret": "bench-secret"},
    "crisp": {"api_key": "bench-id:bench-key", "website_id": "bench-site"},
    "segment": {"write_key": "bench-write-key"},
    "mixpanel": {"project_token": "bench-project-token"},
    "google-analytics-4": {"measurement_id": "G-BENCH01", "api_secret": "bench-api-secret", "default_currency": "USD"},
    "slack": {"webhook_url": "https://hooks.slack.com/services/TBENCH01/BBENCH01/benchwebhooksecret",
              "events": ["Order Completed", "Signed Up"], "channels": {"Order Completed": "#orders"}},
    "klaviyo": {"api_key": "pk_benchkey01"},
    "meta-conversions": {"pixel_id": "1000001", "access_token": "bench-meta-token"},
    "customerio": {"site_id": "bench-site", "api_key": "bench-cio-key"},
    "webhook": {"url": "https://hooks.example.com/bench?token=bench", "shared_secret": "bench-webhook-secret",
                "headers": {"X-Tenant": "bench"}},
    "amplitude": {"api_key": "bench-amplitude-key"},
    "posthog": {"api_key": "phc_benchkey"},
    "braze": {"api_key": "bench-braze-key"},
    "hubspot": {"access_token": "bench-hubspot-token", "portal_id": "1000001"},
    "intercom": {"access_token": "bench-intercom-token"},
}

# --------------------------------------------------------------------------- workload

PRODUCTS = [{"product_id": f"p{i}", "sku": f"SKU-{i:04d}", "name": f"Product {i}", "price": round(5 + i * 1.25, 2),
             "category": ["Games", "Books", "Garden"][i % 3], "brand": "Acme", "quantity": 1 + i % 3} for i in range(40)]
FIRST = ["Ann", "Bo", "Chen", "Dara", "Émile", "Farah", "Gus", "Hana", "Ivo", "Jun"]
LAST = ["Lee", "Okafor", "Müller", "Santos", "Tanaka", "Novak", "Haddad"]
TRACKS = ["Order Completed", "Product Viewed", "Product Added", "Checkout Started", "Signed Up", "Clicked Login"]


def workload(count: int, seed: int = 6):
    """Yield ``count`` valid Segment events as JSON text, the same ones for the same seed."""
    rng = random.Random(seed)
    for n in range(count):
        anonymous = rng.random() < 0.2
        user = None if anonymous else f"user-{rng.randrange(50_000)}"
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{rng.randrange(10_000)}@example.com"
        ts = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
             f"{rng.randint(0, 59):02d}.{rng.randrange(1000):03d}Z"
        event = {"messageId": f"msg-{seed}-{n}", "timestamp": ts, "sentAt": ts, "anonymousId": f"anon-{rng.randrange(10**6)}",
                 "context": {"ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", "library": {"name": "analytics.js", "version": "2.11.1"},
                             "page": {"path": "/shop", "url": "https://shop.example/shop"}, "userAgent": "Mozilla/5.0"}}
        if user:
            event["userId"] = user
            event["context"]["traits"] = {"email": email, "name": f"{first} {last}"}
        kind = rng.choices(["track", "identify", "page", "group", "alias"], [50, 20, 20, 5, 5])[0]
        event["type"] = kind
        if kind == "track":
            name = rng.choice(TRACKS)
            event["event"] = name
            if name in ("Order Completed", "Checkout Started"):
                items = [dict(p) for p in rng.sample(PRODUCTS, rng.randint(1, 4))]
                total = round(sum(p["price"] * p["quantity"] for p in items), 2)
                event["properties"] = {"order_id": f"o{n}", "total": total, "revenue": total, "currency": "EUR",
                                       "coupon": rng.choice(["", "SPRING"]), "products": items}
            elif name.startswith("Product"):
                event["properties"] = dict(rng.choice(PRODUCTS))
            else:
                event["properties"] = {"plan": rng.choice(["free", "pro"]), "weight": rng.randint(1, 3)}
        elif kind == "identify":
            event["traits"] = {"email": email, "firstName": first, "lastName": last, "plan": rng.choice(["free", "pro"]),
                               "phone": f"+4420{rng.randrange(10**7, 10**8)}", "title": "Buyer",
                               "address": {"city": "London", "country": "GB"}, "logins": rng.randrange(100),
                               "createdAt": ts}
            if rng.random() < 0.5:
                event["traits"]["companyId"] = f"c{rng.randrange(500)}"
        elif kind == "page":
            event["name"] = rng.choice(["Home", "Pricing", None])
            event["properties"] = {"path": "/pricing", "url": "https://shop.example/pricing", "title": "Pricing"}
        elif kind == "group":
            event["groupId"] = f"c{rng.randrange(500)}"
            event["traits"] = {"name": "Acme Ltd", "industry": "Retail", "employees": rng.randrange(10, 500)}
        else:
            event["previousId"] = event["anonymousId"]
            event["userId"] = user or f"user-{rng.randrange(50_000)}"
        yield json.dumps(event, ensure_ascii=False)


# --------------------------------------------------------------------------- the two ways

class HandWritten:
    """Parse, validate, route and map by hand; msgspec, orjson and jsonschema-rs, like eventmap's fast path."""

    def __init__(self, slugs: list[str]):
        schemas = {n: json.loads((SCHEMA_DIR / f"{n}.schema.json").read_text()) for n in ("common", *CALL_TYPES)}
        registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas.values()])
        self.validators = {n: jsonschema_rs.Draft202012Validator(schemas[n], registry=registry, validate_formats=True,
                                                                 formats={"date-time": _is_datetime}) for n in CALL_TYPES}
        self.routes = [(NAMES[s], ACCEPTS[s], MAPPINGS[s], SETTINGS[s]) for s in slugs]
        self.parse = msgspec.json.Decoder().decode  # the library eventmap parses with

    def requests(self, line: str) -> list:
        event = self.parse(line)
        if not self.validators[event["type"]].is_valid(event):
            return []
        out = []
        integrations = event.get("integrations") or {}
        for name, accepts, mapping, settings in self.routes:
            if integrations.get(name, integrations.get("All", True)) is False or event["type"] not in accepts:
                continue
            mapped = mapping(event, settings)
            if mapped is not None:
                # a baseline that signs or form-encodes its body returns the very bytes it sends; None: no body
                out += [(url, body if body is None or isinstance(body, bytes) else orjson.dumps(body))
                        for url, body in (mapped if isinstance(mapped, list) else [mapped])]
        return out


class EventMap:
    def __init__(self, engine: Engine, slugs: list[str]):
        self.engine = engine
        self.routes = [engine.route(s, SETTINGS[s], environ={}) for s in slugs]

    def requests(self, line: str) -> list:
        event = jsoncodec.loads(line)
        return [(r.url, r.encoded_body()) for o in self.engine.render_all(event, self.routes) for r in o.requests]


def check_same_output(lines: list[str], mine: EventMap, theirs: HandWritten) -> None:
    for line in lines:
        got, want = mine.requests(line), theirs.requests(line)
        if got != want:
            raise SystemExit(f"hand-written and eventmap outputs differ for {line}\n eventmap:    {got}\n hand-written: {want}")


def cpu_seconds(work, lines: list) -> float:
    start = time.process_time()
    for line in lines:
        work(line)
    return time.process_time() - start


def rate(work, lines: list, runs: int) -> float:
    """Median events per CPU second over ``runs`` passes."""
    return statistics.median(len(lines) / cpu_seconds(work, lines) for _ in range(runs))


def compare(ours, theirs, lines: list, runs: int) -> tuple[float, float, float]:
    """(our events/s, their events/s, our time / their time), medians over ``runs`` back-to-back pairs.

    Each pair runs the two one after the other, so a slower or faster spell of a
    shared machine weighs on both sides of that pair's ratio alike.
    """
    pairs = [(cpu_seconds(ours, lines), cpu_seconds(theirs, lines)) for _ in range(runs)]
    return (len(lines) / statistics.median(o for o, _ in pairs), len(lines) / statistics.median(t for _, t in pairs),
            statistics.median(o / t for o, t in pairs))


# --------------------------------------------------------------------------- memory and configuration

def stream_child(count: int) -> None:
    """Stream ``count`` events through the batch path (lazy lines in, one outcome line out, discarded)."""
    engine = Engine(ROOT / "mappings")
    routes = [engine.route(s, SETTINGS[s], environ={}) for s in SETTINGS]
    start = time.process_time()
    for line in workload(count, seed=7):
        for outcome in engine.render_all(jsoncodec.loads(line), routes):
            json.dumps(outcome.to_dict(), ensure_ascii=False)
            for request in outcome.requests:
                request.encoded_body()
    print(json.dumps({"rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "cpu": time.process_time() - start}))


def peak_rss(count: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stream-child", str(count)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def many_files(folder: Path, count: int) -> None:
    shipped = sorted((ROOT / "mappings" / "destinations").glob("*.yaml"))
    (folder / "destinations").mkdir(parents=True)
    for i in range(count):
        source = shipped[i % len(shipped)]
        text = re.sub(r"^name: (.*)$", lambda m: f"name: {m.group(1)} {i}", source.read_text(encoding="utf-8"), count=1, flags=re.M)
        (folder / "destinations" / f"{source.stem}_{i}.yaml").write_text(text, encoding="utf-8")


def configuration(files: int, fan_out: int, runs: int, lines: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        many_files(Path(tmp), files)
        loads = []
        for _ in range(runs):
            start = time.process_time()
            engine = Engine(tmp)
            loads.append(time.process_time() - start)
        slugs = sorted(engine.destinations)[:fan_out]
        routes = [engine.route(s, SETTINGS[re.sub(r"_\d+$", "", s)], environ={}) for s in slugs]
        events = [jsoncodec.loads(line) for line in lines]
        one = rate(lambda e: engine.render_all(e, routes[:1]), events, runs)
        many = rate(lambda e: engine.render_all(e, routes), events, runs)
    return {"load_s": statistics.median(loads), "cost_ratio": one / many, "fan_out": len(routes)}


# --------------------------------------------------------------------------- report

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events in the throughput workload (default 50,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement; the median is reported (default 5)")
    parser.add_argument("--stream", type=int, default=1_000_000, help="events in the long memory run (default 1,000,000)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the script works")
    parser.add_argument("--stream-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_child:
        stream_child(args.stream_child)
        return 0
    if args.smoke:
        args.events, args.runs, args.stream = 400, 1, 2_000
    lines = list(workload(args.events))
    engine = Engine(ROOT / "mappings")
    print(f"python {sys.version.split()[0]}, {args.events:,} events, median of {args.runs} runs, CPU time\n")
    print(f"{'destination':<16}{'eventmap ev/s':>15}{'hand-written ev/s':>19}{'eventmap time':>22}")
    worst = 0.0
    for slugs in [[s] for s in SETTINGS] + [list(SETTINGS)]:
        mine, theirs = EventMap(engine, slugs), HandWritten(slugs)
        check_same_output(lines, mine, theirs)
        ours, base, ratio = compare(mine.requests, theirs.requests, lines, args.runs)
        worst = max(worst, ratio)
        label = slugs[0] if len(slugs) == 1 else f"all {len(slugs)}"
        print(f"{label:<16}{ours:>15,.0f}{base:>19,.0f}{ratio:>18.2f} x baseline")
    small, large = peak_rss(args.stream // 10), peak_rss(args.stream)
    print(f"\nmemory: peak RSS {small['rss_kib'] / 1024:,.1f} MiB after {args.stream // 10:,} events, "
          f"{large['rss_kib'] / 1024:,.1f} MiB after {args.stream:,} (all {len(SETTINGS)} destinations, batch path); "
          f"growth {(large['rss_kib'] - small['rss_kib']) / 1024:+.1f} MiB")
    files, fan_out = (20, 8) if args.smoke else (300, 50)
    config = configuration(files, fan_out, args.runs, lines[:2000])
    print(f"configuration: {files} destination files load in {config['load_s']:.2f} s; one event to "
          f"{config['fan_out']} destinations costs {config['cost_ratio']:.1f}x one destination")
    print(f"\nworst ratio to the hand-written baseline: {worst:.2f}x (target: at most 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
