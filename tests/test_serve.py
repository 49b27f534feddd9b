"""``eventmap serve`` as Segment's SDKs see it: a real server process, the real analytics-python client.

One server (two gunicorn processes) is shared by the tests of this module; each
test uses its own user ids and reads the store (the SQLite file the server
writes) to see what was accepted. Stand-in vendors are local HTTP servers.
"""
from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import segment.analytics as analytics
from pytest_httpserver import HTTPServer
from segment.analytics.request import APIError

from engine import Engine
from engine.load.config import load_config, routes_from_config
from engine.store import INTAKE, QUEUED, REJECTED, SKIPPED, open_store
from serve_harness import HOOK_PASSWORD, MOBILE_KEY, WRITE_KEY, Server, write_config


@pytest.fixture(scope="module")
def vendor():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, vendor):
    folder = tmp_path_factory.mktemp("serve")
    write_config(folder, vendor.url_for("").rstrip("/"), vendor.url_for("/gladly").rstrip("/"))
    return folder


@pytest.fixture(scope="module")
def server(folder):
    with Server(folder, "--config", "eventmap.yaml", "--workers", "2", "--intake-only") as running:
        yield running


@pytest.fixture(scope="module")
def store(folder, server):
    with open_store("sqlite:///events.db", base=folder) as opened:
        yield opened


def stored(store, message_id: str) -> dict[str, object]:
    """{destination: DeliveryRecord} for one message id, with the event."""
    found = {}
    after = 0
    while True:
        page = store.list(limit=500, after_id=after)
        if not page:
            return found
        for record in page:
            if record.message_id == message_id:
                found[record.destination] = store.get(record.id)
        after = page[-1].id


def client(server, key=WRITE_KEY, **options) -> analytics.Client:
    return analytics.Client(key, host=server.url, sync_mode=True, max_retries=0, **options)


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the real SDK

def test_events_from_the_segment_sdk_are_stored_for_each_destination_and_render_for_the_stand_in(server, store, folder,
                                                                                                    vendor):
    sdk = client(server)
    who = user()
    _, identify = sdk.identify(who, {"email": f"{who}@example.com", "name": "Ada Lovelace"})
    _, track = sdk.track(who, "Order Completed", {"order_id": "o-1", "revenue": 42.5})

    for sent in (identify, track):
        deliveries = stored(store, sent["messageId"])
        assert deliveries["planhat"].state == QUEUED
        event = deliveries["planhat"].event
        assert event["userId"] == who and event["type"] == sent["type"]
        assert event["context"]["library"]["name"] == "analytics-python"
        assert "receivedAt" in event and "writeKey" not in event
    # crisp subscribes to identify only
    assert stored(store, identify["messageId"])["crisp"].state == QUEUED
    assert stored(store, track["messageId"])["crisp"].state == SKIPPED

    # what the delivery workers will send: rendered from the stored event, aimed at the stand-in vendor
    config, problems = load_config(folder / "eventmap.yaml")
    engine = Engine()
    routes = [r for r in routes_from_config(engine, config) if r.destination.slug == "planhat"]
    outcome = engine.render_all(stored(store, track["messageId"])["planhat"].event, routes)[0]
    assert outcome.status == "send"
    assert all(r.url.startswith(vendor.url_for("/planhat")) for r in outcome.requests)


def test_queued_sdk_batches_all_arrive(server, store):
    sdk = analytics.Client(WRITE_KEY, host=server.url, upload_size=25, max_retries=0)
    who = user()
    sent = [sdk.track(who, "Clicked", {"n": n})[1]["messageId"] for n in range(60)]
    sdk.flush()
    sdk.join()
    assert all(stored(store, message_id).get("planhat") for message_id in sent)


def test_gzip_bodies_from_the_sdk_are_accepted(server, store):
    _, sent = client(server, gzip=True).track(user(), "Zipped")
    assert stored(store, sent["messageId"])["planhat"].state == QUEUED


def test_a_write_key_from_the_environment_is_accepted(server, store):
    _, sent = client(server, key=MOBILE_KEY).page(user(), name="Home")
    assert stored(store, sent["messageId"])["planhat"].state == QUEUED


def test_an_unknown_write_key_is_401_and_nothing_is_stored(server, store):
    with pytest.raises(APIError) as raised:
        client(server, key="not-a-key").track(user(), "Nope")
    assert raised.value.status == 401
    assert "unknown write key" in raised.value.message
    missing = server.post("/v1/track", {"userId": "u", "event": "E"}, key=None)
    assert missing.status_code == 401
    assert "HTTP Basic user or as writeKey" in missing.json()["message"]


# --------------------------------------------------------------------------- the HTTP API directly

def test_write_key_in_the_body_works_and_is_not_stored(server, store):
    message_id = f"m-{uuid.uuid4()}"
    answer = server.post("/v1/track", {"writeKey": WRITE_KEY, "userId": user(), "event": "Body Key",
                                       "messageId": message_id}, key=None)
    assert answer.status_code == 200, answer.text
    assert "writeKey" not in stored(store, message_id)["planhat"].event


@pytest.mark.parametrize("path, body", [
    ("/v1/i", {"traits": {"plan": "pro"}}),
    ("/v1/t", {"event": "Short Path"}),
    ("/v1/p", {"name": "Home"}),
    ("/v1/s", {"name": "Settings"}),   # planhat skips screens: the event is stored all the same
    ("/v1/g", {"groupId": "g-1"}),
    ("/v1/a", {"previousId": "old-id"}),
    ("/v1/identify", {"traits": {}}),
    ("/v1/alias", {"previousId": "old"}),
])
def test_every_call_path_and_its_short_alias_is_accepted_with_the_type_from_the_path(server, store, path, body):
    message_id = f"m-{uuid.uuid4()}"
    answer = server.post(path, {"userId": user(), "messageId": message_id, **body})
    assert answer.status_code == 200, answer.text
    deliveries = stored(store, message_id)
    expected = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
    name = path.rsplit("/", 1)[1]
    assert deliveries["planhat"].event["type"] == expected.get(name, name)


def test_batch_context_and_integrations_merge_into_each_event_and_fields_are_filled(server, store):
    now = datetime.now(timezone.utc)
    happened = now - timedelta(hours=2)
    device_clock_ahead = timedelta(minutes=10)
    items = [
        {"type": "track", "userId": user(), "event": "A", "context": {"locale": "fr-FR"},
         # the device's clock is 10 minutes fast: both times it sent are shifted by that
         "timestamp": (happened + device_clock_ahead).isoformat(), "integrations": {"Crisp": False}},
        {"type": "identify", "userId": user(), "messageId": f"m-{uuid.uuid4()}"},
    ]
    body = {"batch": items, "context": {"ip": "203.0.113.9", "locale": "en-US"}, "integrations": {"All": True},
            "sentAt": (now + device_clock_ahead).isoformat()}
    answer = server.post("/v1/batch", body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "accepted": 2, "rejected": []}

    second = stored(store, items[1]["messageId"])["planhat"].event
    assert second["context"] == {"ip": "203.0.113.9", "locale": "en-US"}
    assert second["integrations"] == {"All": True}
    first_id = _newest_message_id(store, items[0]["userId"])
    assert first_id.startswith("eventmap-")           # filled in
    first = stored(store, first_id)["planhat"].event
    assert first["context"] == {"ip": "203.0.113.9", "locale": "fr-FR"}   # the event's own key wins
    assert first["integrations"] == {"All": True, "Crisp": False}
    received = datetime.fromisoformat(first["receivedAt"])
    assert abs(received - now) < timedelta(seconds=30)
    # timestamp = receivedAt - (sentAt - originalTimestamp): the skew is gone
    corrected = datetime.fromisoformat(first["timestamp"])
    assert corrected == received - timedelta(hours=2)
    assert first["originalTimestamp"] == items[0]["timestamp"]


def _newest_message_id(store, user_id: str) -> str:
    for record in reversed(store.list(destination="planhat", limit=100000)):
        if store.get(record.id).event.get("userId") == user_id:
            return record.message_id
    raise AssertionError(f"no event of {user_id}")


def test_a_batch_mixing_valid_and_invalid_events_accepts_the_valid_and_reports_the_invalid(server, store):
    ids = [f"m-{uuid.uuid4()}" for _ in range(3)]
    batch = [{"type": "track", "userId": user(), "event": "Fine", "messageId": ids[0]},
             {"type": "track", "userId": user(), "messageId": ids[1]},                     # no event name
             {"type": "identify", "userId": user(), "messageId": ids[2]}]
    answer = server.post("/v1/batch", {"batch": batch})
    assert answer.status_code == 200
    report = answer.json()
    assert report["accepted"] == 2
    assert [(r["index"], r["messageId"]) for r in report["rejected"]] == [(1, ids[1])]
    assert any(e["path"] == "event" for e in report["rejected"][0]["errors"])
    assert stored(store, ids[0])["planhat"].state == QUEUED
    assert stored(store, ids[2])["planhat"].state == QUEUED
    kept = stored(store, ids[1])
    assert list(kept) == [INTAKE] and kept[INTAKE].state == REJECTED   # kept for inspection


def test_a_batch_where_nothing_is_valid_is_400(server):
    answer = server.post("/v1/batch", {"batch": [{"type": "track"}, "not an event"]})
    assert answer.status_code == 400
    assert answer.json()["accepted"] == 0 and len(answer.json()["rejected"]) == 2


def test_a_single_invalid_event_is_400_naming_the_field(server):
    answer = server.post("/v1/track", {"userId": "u"})
    assert answer.status_code == 400
    assert "event: track: 'event' is required" in answer.json()["message"]


def test_invalid_json_is_400_with_where_it_broke(server):
    answer = server.post("/v1/batch", data=b'{"batch": [{"type": "track",}]}')
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "invalid_json"
    assert "not valid JSON" in body["message"] and "line 1 column" in body["message"]
    assert server.post("/v1/track", data=b"[1, 2]").json()["message"] == "expected a JSON object, got a list"
    assert "not UTF-8" in server.post("/v1/track", data=b'{"userId": "\xff"}').json()["message"]
    for depth in (900, 5000):  # 900 levels parse, and would have been stored for the workers to trip on
        deep = server.post("/v1/track", data=b'{"userId": "u", "event": "x", "properties": '
                           + b"[" * depth + b"]" * depth + b"}")
        assert deep.status_code == 400 and "nested deeper than eventmap reads (over 100 levels)" in deep.json()["message"]


def test_gzip_request_body(server, store):
    message_id = f"m-{uuid.uuid4()}"
    data = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": user(), "event": "Gz",
                                                "messageId": message_id}]}).encode())
    answer = server.post("/v1/batch", data=data, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert stored(store, message_id)["planhat"].state == QUEUED
    broken = server.post("/v1/batch", data=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "not valid gzip" in broken.json()["message"]


def test_an_event_over_32_kb_is_400_naming_the_limit(server):
    answer = server.post("/v1/track", {"userId": "u", "event": "Big", "properties": {"blob": "x" * 33_000}})
    assert answer.status_code == 400
    assert "32 KB limit per event" in answer.json()["message"]


def test_a_batch_item_over_32_kb_is_rejected_alone(server, store):
    ok_id, big_id = f"m-{uuid.uuid4()}", f"m-{uuid.uuid4()}"
    batch = [{"type": "track", "userId": user(), "event": "Small", "messageId": ok_id},
             {"type": "track", "userId": user(), "event": "Big", "messageId": big_id, "properties": {"b": "x" * 33_000}}]
    answer = server.post("/v1/batch", {"batch": batch})
    assert answer.status_code == 200
    assert "32 KB limit per event" in answer.json()["rejected"][0]["errors"][0]["message"]
    assert stored(store, ok_id)["planhat"].state == QUEUED
    assert stored(store, big_id)[INTAKE].state == REJECTED


def test_a_batch_over_500_kb_is_400_naming_the_limit_even_gzipped(server, store):
    batch = [{"type": "track", "userId": user(), "event": "Bulk", "properties": {"pad": "y" * 20_000},
              "messageId": f"m-{uuid.uuid4()}"} for _ in range(30)]
    body = json.dumps({"batch": batch}).encode()
    assert len(body) > 500 * 1024
    for data, headers in ((body, {}), (gzip.compress(body), {"Content-Encoding": "gzip"})):
        answer = server.post("/v1/batch", data=data, headers=headers)
        assert answer.status_code == 400
        assert "500 KB limit per batch request" in answer.json()["message"]
    assert stored(store, batch[0]["messageId"]) == {}


def test_unknown_paths_and_methods_get_clear_answers(server):
    assert server.post("/v1/nope", {}).status_code == 404
    answer = requests.get(server.url + "/v1/track", timeout=5)
    assert answer.status_code == 405 and "POST" in answer.json()["message"]


def test_health(server):
    answer = requests.get(server.url + "/healthz", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_metrics_count_from_the_store_so_every_process_agrees(server, store):
    for _ in range(6):
        server.post("/v1/track", {"userId": user(), "event": "Counted"})
    server.post("/v1/track", {"userId": "u"})     # rejected at intake
    counts = store.counts(0)
    pages = {requests.get(server.url + "/metrics", timeout=5).text for _ in range(8)}  # both processes answer
    assert len(pages) == 1
    text = pages.pop()
    queued = counts["planhat"]["queued"]
    assert f'eventmap_queue_depth{{destination="planhat"}} {queued}' in text
    assert f'eventmap_accepted{{destination="planhat"}} {sum(counts["planhat"].values())}' in text
    assert f"eventmap_intake_rejected {counts[INTAKE]['rejected']}" in text
    assert 'eventmap_delivered{destination="crisp"} 0' in text
    assert "# TYPE eventmap_failed gauge" in text


def test_secrets_never_reach_the_log(server):
    server.post("/v1/track", {"userId": "u", "event": "E"}, key="wrong-" + WRITE_KEY)
    server.post("/sources/gladly", {"id": "x"}, key=None, headers={"Authorization": "Basic bm9wZTpub3Bl"})
    log = server.output()
    for secret in (WRITE_KEY, MOBILE_KEY, HOOK_PASSWORD):
        assert secret not in log
    assert "unknown write key" in log


def test_timestamp_without_sent_at_is_kept_and_without_any_time_is_received_at(server, store):
    kept, stamped = f"m-{uuid.uuid4()}", f"m-{uuid.uuid4()}"
    server.post("/v1/track", {"userId": user(), "event": "Old", "messageId": kept, "timestamp": "2024-05-02T09:14:03Z"})
    server.post("/v1/track", {"userId": user(), "event": "Now", "messageId": stamped})
    old = stored(store, kept)["planhat"].event
    assert old["timestamp"] == old["originalTimestamp"] == "2024-05-02T09:14:03Z"
    new = stored(store, stamped)["planhat"].event
    assert new["timestamp"] == new["receivedAt"] and "originalTimestamp" not in new
