"""Screenshots of every console page for docs/console/: ``python -m tests.console_screenshots``.

Starts a real server (console on) with a vendor stand-in that refuses some events, fails
others a few times and one destination for good, sends a mix of events and a few requests
the server refuses (a browser SDK's wrong write key, a page the source does not allow),
and photographs each page in Debian's Chromium. Run it again after changing a page and
review the pictures.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from console_harness import (
    CONSOLE_PASSWORD,
    CONSOLE_USER,
    FAILING,
    REFUSED_MARK,
    SHOP,
    browser_missing,
    launch,
    refuse_marked,
    start,
)
from serve_harness import ROOT, wait_for
from vendor_server import Answer, VendorServer

from engine.store import open_store

OUT = ROOT / "docs" / "console"


def send_traffic(server) -> None:
    people = ["ada", "grace", "linus", "margaret", "barbara", "ken"]
    for i, person in enumerate(people):
        email = f"{person}.{REFUSED_MARK}@example.com" if i in (2, 4) else f"{person}@example.com"
        server.post("/v1/identify", {"userId": person, "traits": {"email": email, "name": person.title(),
                                                                  "plan": "pro"}})
        server.post("/v1/track", {"userId": person, "event": "Order Completed",
                                  "properties": {"order_id": f"o-{i}", "revenue": 10 + i}})
        server.post("/v1/page", {"userId": person, "name": "Pricing"})
    server.post("/v1/batch", {"batch": [{"type": "track", "userId": "ada"}, {"type": "identify", "userId": "ada"}]})
    sdk = {"Content-Type": "text/plain", "Origin": SHOP, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126"}
    for _ in range(3):   # a page with an old write key
        requests.post(server.url + "/v1/t", data=json.dumps({"writeKey": "wk_live_0ld5e8a1f2c94b7d", "type": "track",
                                                             "event": "Viewed", "anonymousId": "a-1"}),
                      headers=sdk, timeout=10)
    server.post("/v1/track", {"userId": "ada", "event": "Viewed"}, headers={"Origin": "https://staging.shop.example"})


def main() -> int:
    missing = browser_missing()
    if missing:
        print(f"console_screenshots: {missing}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, VendorServer() as vendor:
        refuse_marked(vendor)
        vendor.answer(Answer(503, {"error": "busy"}), when=lambda r: r.path.startswith("/planhat"), times=2)
        server = start(Path(folder), vendor, failing=True)
        try:
            send_traffic(server)
            with open_store("sqlite:///events.db", base=Path(folder)) as store:
                wait_for(lambda: store.counts(time.time()).get("crisp", {}).get("dead", 0) >= 2, 30, "two dead letters")
                wait_for(lambda: not any(store.counts(time.time()).get("planhat", {}).get(s) for s in ("queued", "retrying")),
                         30, "planhat sent")
                wait_for(lambda: store.list(FAILING, "retrying", limit=1), 30, f"{FAILING} retrying")
                dead = store.list("crisp", "dead", limit=1)[0].id
                batched = max((r for r in store.list("planhat", "delivered", limit=1000)),
                              key=lambda r: len(store.get(r.id).sent.deliveries) if store.get(r.id).sent else 0).id
            time.sleep(1.5)   # the refusals of both server processes are written
            with sync_playwright() as playwright:
                browser = launch(playwright)
                context = browser.new_context(http_credentials={"username": CONSOLE_USER, "password": CONSOLE_PASSWORD},
                                              viewport={"width": 1280, "height": 860})
                page = context.new_page()

                def shoot(path: str, name: str) -> None:
                    page.goto(server.url + "/console" + path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                    print(f"console_screenshots: {OUT / name}.png", file=sys.stderr)

                shoot("/", "overview")
                shoot("/refused", "refused")
                shoot("/events", "events")
                shoot(f"/deliveries/{batched}", "delivery")
                shoot("/dead?destination=crisp", "dead-letters")
                page.check(f'tr[data-id="{dead}"] input[type="checkbox"]')
                page.click("#retry-chosen")
                page.screenshot(path=str(OUT / "retry-confirm.png"), full_page=True)
                page.goto(server.url + "/console/tester")
                page.select_option("#destination", "crisp")
                event = json.loads((ROOT / "fixtures/events/identify-full.json").read_text(encoding="utf-8"))
                page.fill("#event", json.dumps(event, indent=2))
                page.click("#run")
                page.screenshot(path=str(OUT / "tester.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
