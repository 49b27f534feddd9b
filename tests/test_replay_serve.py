"""What ``eventmap serve`` accepts is archived with the source whose write key came with it, on both intake
paths (``validate``, and ``queue``'s inbox processor), and a replay of one source reaches a stand-in again
through the server's own delivery process, once per event."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from pytest_httpserver import HTTPServer
from serve_harness import MOBILE_KEY, WRITE_KEY, Server, environment, wait_for, write_config
from vendor_server import VendorServer

from engine.durations import describe_time
from engine.store import open_store


def segment_ids(vendor: VendorServer) -> Counter:
    with vendor.lock:
        return Counter(m for r in vendor.received if r.path.startswith("/segment") for m in r.message_ids())


@pytest.mark.parametrize("mode", ["validate", "queue"])
def test_a_replay_of_one_source_sends_what_the_server_accepted_from_it_once_more(tmp_path, mode):
    with VendorServer() as vendor:
        config = write_config(tmp_path, vendor.url, "http://127.0.0.1:9", more_destinations=f"""\
            segment:
              settings: {{write_key: replay-test, base_url: {vendor.url}/segment}}
            """)
        config.write_text(config.read_text(encoding="utf-8") + f"server:\n  intake: {mode}\n", encoding="utf-8")
        since = describe_time(time.time() - 1)
        server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1").start()
        try:
            web = [{"type": "track", "event": "Viewed", "userId": "u1", "messageId": f"web-{n}"} for n in range(5)]
            mobile = [{"type": "track", "event": "Opened", "userId": "u2", "messageId": f"mob-{n}"} for n in range(3)]
            assert server.post("/v1/batch", {"batch": [*web, {"type": "track", "userId": "u1"}]}).ok  # one refused
            assert server.post("/v1/batch", {"batch": mobile}, key=MOBILE_KEY).ok
            wait_for(lambda: len(segment_ids(vendor)) == 8, 30, "the first delivery of every event")
            until = describe_time(time.time() + 1)

            replay = subprocess.run([sys.executable, "-m", "engine", "replay", "--config", str(config), "--since",
                                     since, "--until", until, "--source", "web", "--destination", "segment"],
                                    cwd=tmp_path, capture_output=True, text=True, timeout=60, env=environment())
            assert replay.returncode == 0, replay.stderr
            record = json.loads(replay.stdout)
            assert (record["events"], record["counts"]["segment"]["replayed"]) == (5, 5)
            assert record["source"] == "web" and record["destinations"] == ["segment"]
            wait_for(lambda: sum(segment_ids(vendor).values()) >= 13, 30, "the replay's deliveries")
            time.sleep(0.5)   # anything sent twice would arrive by now
        finally:
            server.stop()
    assert segment_ids(vendor) == {**{f"web-{n}": 2 for n in range(5)}, **{f"mob-{n}": 1 for n in range(3)}}


def test_the_write_key_never_reaches_the_archive(tmp_path):
    """The source is kept by name; the key the SDK sent (in the body, as browsers do) is not."""
    with VendorServer() as vendor:
        write_config(tmp_path, vendor.url, "http://127.0.0.1:9")
        server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1").start()
        try:
            body = {"batch": [{"type": "track", "event": "Viewed", "userId": "u1", "messageId": "k-1"}],
                    "writeKey": WRITE_KEY}
            assert server.post("/v1/batch", body, key=None).ok
        finally:
            server.stop()
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        [item] = store.archived(0, 10**9, 0, time.time() + 1, None, 10)
    assert item.source == "web" and WRITE_KEY not in json.dumps(item.event)


def test_events_a_webhook_source_makes_are_archived_under_its_name_and_the_payload_is_not(tmp_path):
    """The server keeps the payload (a queued delivery to source:gladly); the source worker maps it into events
    through intake, which archives them under the webhook source's name."""
    from test_serve_gladly import PSEUDO, GladlyStandIn, payload

    from engine.deliver import HttpClient
    from engine.intake import Intake
    from engine.paths import MAPPINGS_DIR
    from engine.serve import SourceWorker, load_serve_config
    from engine.serve.setup import build
    from engine.store import NewDelivery, NewEvent

    stand_in = GladlyStandIn()
    gladly = HTTPServer(host="127.0.0.1", port=0)
    gladly.expect_request(re.compile("^/gladly/.*"), method="GET").respond_with_handler(stand_in)
    gladly.start()
    try:
        path = write_config(tmp_path, "http://127.0.0.1:9", gladly.url_for("/gladly").rstrip("/"))
        setup = build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())
        with setup.open_store() as store:
            body = payload("conversation-created")
            store.accept([NewEvent(body, f"gladly:{body['id']}", [NewDelivery(PSEUDO)])], time.time())
            worker = SourceWorker(PSEUDO, setup.sources["gladly"], Intake(setup.engine, setup.routes, store),
                                  store, HttpClient(timeout=5), setup.config.delivery)
            assert worker.run_once(time.time()) == 1
            archived = store.archived(0, 10**9, 0, time.time() + 1, None, 10)
    finally:
        gladly.clear()
        gladly.stop()
    assert archived and {a.source for a in archived} == {"gladly"}
    assert all(a.event.get("type") == "track" for a in archived)   # the mapped events, not the raw payload
