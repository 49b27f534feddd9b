"""The console's Replays page in a real browser (Debian's Chromium, driven by Playwright) against a real
``eventmap serve`` with the console on: each replay with its id, range, filters and progress, kept live."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from console_harness import chromium_or_skip, console_page, settled, start
from serve_harness import environment
from vendor_server import VendorServer

from engine.durations import describe_time
from engine.store import NewDelivery, Replay, ReplayStep, open_store


@pytest.fixture
def page():
    with chromium_or_skip() as browser, console_page(browser) as opened:
        yield opened


def test_the_replays_page_shows_each_replay_with_its_range_filters_and_progress(tmp_path, page):
    with VendorServer() as vendor:
        server = start(tmp_path, vendor)
        try:
            since = describe_time(time.time() - 1)
            for n in range(4):
                assert server.post("/v1/track", {"userId": "u1", "event": "Signed Up" if n % 2 else "Logged In",
                                                 "messageId": f"c-{n}"}).ok
            settled(tmp_path)
            until = describe_time(time.time() + 1)
            done = subprocess.run([sys.executable, "-m", "engine", "replay", "--config", "eventmap.yaml", "--since",
                                   since, "--until", until, "--source", "web", "--destination", "planhat",
                                   "--where", "event == 'Signed Up'"], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=60, env=environment())
            assert done.returncode == 0, done.stderr
            with open_store("sqlite:///events.db", base=tmp_path) as store:   # one left halfway, as a kill leaves it
                first, last = store.archive_bounds(0, time.time() + 1)
                halfway = store.start_replay(Replay(0, "", 0.0, time.time(), None, None, None, first, last,
                                                    first - 1, counts={"planhat": {}}, owner="gone:42"), time.time())
                step = ReplayStep(first + 1, 2, 2, {"planhat": {"replayed": 2}},
                                  [(first, "c-0", NewDelivery("planhat")), (first + 1, "c-1", NewDelivery("planhat"))])
                assert store.replay_step(halfway.id, "gone:42", first - 1, step, time.time())

            page.goto(server.url + "/console/")
            page.get_by_role("link", name="Replays").click()
            finished = page.locator('tr[data-replay="1"]')
            assert finished.locator(".state").inner_text() == "done"
            shown_range = finished.locator(".range").inner_text()
            assert since[:10] in shown_range and " UTC to " in shown_range
            filters = finished.locator(".filters").inner_text()
            assert "source web" in filters and "to planhat" in filters and "where event == 'Signed Up'" in filters
            assert finished.locator(".share").inner_text() == "100%"
            assert "4 events read, 2 matched" in finished.locator(".progress").inner_text()
            assert finished.locator('[data-destination="planhat"] [data-count="replayed"]').inner_text() == "2"

            unfinished = page.locator(f'tr[data-replay="{halfway.id}"]')
            assert unfinished.locator(".state").inner_text() == "running"
            assert unfinished.locator(".share").inner_text() == "50%"
            assert "none: every source" in unfinished.locator(".filters").inner_text()
            assert "gone:42" in unfinished.inner_text()

            with open_store("sqlite:///events.db", base=tmp_path) as store:   # it moves on: the page follows
                step = ReplayStep(last, 4, 4, {"planhat": {"replayed": 4}}, [])
                assert store.replay_step(halfway.id, "gone:42", first + 1, step, time.time())
            from playwright.sync_api import expect
            expect(unfinished.locator(".share")).to_have_text("100%")   # the live refresh, polled
            assert "planhat-token" not in page.content()
            assert json.loads(done.stdout)["replay"] == 1
        finally:
            server.stop()
            server.kill()
