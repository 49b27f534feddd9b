"""Events the store cannot hold are rejected alone, with the reason, on SQLite and PostgreSQL alike.

A lone surrogate, NaN, Infinity or 1e400 used to fail the write of a whole
request (a 500, which SDKs resend for ever); a clock correction that overflows
did the same. Here each is sent inside a batch of good events, through the
collector's WSGI app on a real store of each backend, through ``eventmap
serve`` itself, and through ``eventmap enqueue``; and a property-based fuzz of
request bodies checks that no input gets a 500.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid

import pytest
from conftest import REPO
from serve_harness import HOOK_PASSWORD, HOOK_USER, WRITE_KEY, Server, environment, ok_vendor, wait_for, write_config
from werkzeug.test import Client

from engine.cli import EXIT_REJECTED
from engine.paths import MAPPINGS_DIR
from engine.serve import Collector
from engine.serve.config import load_serve_config
from engine.serve.setup import build
from engine.store import INTAKE, QUEUED, REJECTED, open_store

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json"}

# (JSON text of one event, with {id} for its messageId; the JSON path the rejection names)
POISONS = {
    "lone surrogate in a value": ('{"type":"track","event":"E","userId":"\\ud800","messageId":"{id}"}', "userId"),
    "lone surrogate in a key": ('{"type":"track","event":"E","userId":"u","messageId":"{id}",'
                                '"properties":{"a\\udc00":1}}', "properties.a\ufffd"),
    "NaN": ('{"type":"track","event":"E","userId":"u","messageId":"{id}","properties":{"v":NaN}}', "properties.v"),
    "Infinity": ('{"type":"track","event":"E","userId":"u","messageId":"{id}","properties":{"v":[-Infinity]}}',
                 "properties.v[0]"),
    "1e400": ('{"type":"track","event":"E","userId":"u","messageId":"{id}","context":{"n":1e400}}', "context.n"),
}


def good(message_id: str) -> str:
    return json.dumps({"type": "track", "event": "Fine", "userId": "u", "messageId": message_id})


def batch_body(items: list[str]) -> bytes:
    return ('{"batch":[' + ",".join(items) + "]}").encode("utf-8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("poison")
    path = write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    return build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())


@pytest.fixture
def collector(setup, backend):
    """The collector's WSGI app over a fresh store of each backend, and that store to read back from."""
    with backend.open() as store:
        yield Client(Collector(setup.config, setup.engine, setup.routes, backend.open)), store


def deliveries(store, message_id: str) -> dict:
    return {r.destination: store.get(r.id) for r in store.list(limit=10000) if r.message_id == message_id}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poison_event_is_rejected_alone_and_kept_with_its_bad_parts_replaced(collector, poison):
    client, store = collector
    text, path = POISONS[poison]
    ids = [f"m-{uuid.uuid4()}" for _ in range(100)]
    items = [good(i) for i in ids]
    items[37] = text.replace("{id}", ids[37])
    answer = client.post("/v1/batch", data=batch_body(items), headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    report = answer.get_json()
    assert report["accepted"] == 99
    [rejected] = report["rejected"]
    assert (rejected["index"], rejected["messageId"]) == (37, ids[37])
    assert [e["path"] for e in rejected["errors"]] == [path]
    for message_id in ids[:37] + ids[38:]:
        assert deliveries(store, message_id)["planhat"].state == QUEUED
    kept = deliveries(store, ids[37])
    assert list(kept) == [INTAKE] and kept[INTAKE].state == REJECTED
    assert [e["path"] for e in kept[INTAKE].errors] == [path]
    assert "cannot be stored" in kept[INTAKE].reason
    json.dumps(kept[INTAKE].event, allow_nan=False).encode("utf-8")   # what is kept is itself storable


def test_the_safe_copy_replaces_each_bad_part_and_keeps_the_rest(collector):
    client, store = collector
    message_id = f"m-{uuid.uuid4()}"
    text = ('{"type":"track","event":"E\\ud800","userId":"u","messageId":"{id}","properties":'
            '{"k\\udfff":NaN,"ok":"\\ud83d\\ude00","n":1.5}}').replace("{id}", message_id)
    answer = client.post("/v1/track", data=text.encode(), headers=AUTH)
    assert answer.status_code == 400
    assert "event: the text is not valid Unicode" in answer.get_json()["message"]
    event = deliveries(store, message_id)[INTAKE].event
    assert event["event"] == "E\ufffd"
    assert event["properties"] == {"k\ufffd": None, "ok": "\U0001F600", "n": 1.5}


def test_a_lone_surrogate_in_the_message_id_is_reported_and_stored_replaced(collector):
    client, store = collector
    answer = client.post("/v1/batch", data=batch_body([good("fine-1"), '{"type":"track","event":"E","userId":"u",'
                                                       '"messageId":"bad-\\ud800"}']), headers=AUTH)
    assert answer.status_code == 200
    [rejected] = answer.get_json()["rejected"]
    assert rejected["messageId"] == "bad-\ufffd" and rejected["errors"][0]["path"] == "messageId"
    assert deliveries(store, "bad-\ufffd")[INTAKE].state == REJECTED


@pytest.mark.parametrize(("timestamp", "sent_at"), [("9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z"),
                                                    ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z")])
def test_a_clock_correction_that_overflows_keeps_the_time_the_device_gave(collector, timestamp, sent_at):
    client, store = collector
    message_id = f"m-{uuid.uuid4()}"
    event = {"type": "track", "event": "E", "userId": "u", "messageId": message_id, "timestamp": timestamp}
    answer = client.post("/v1/batch", data=json.dumps({"batch": [event], "sentAt": sent_at}).encode(), headers=AUTH)
    assert answer.status_code == 200 and answer.get_json() == {"success": True, "accepted": 1, "rejected": []}
    stored = deliveries(store, message_id)["planhat"].event
    assert stored["timestamp"] == stored["originalTimestamp"] == timestamp


def test_a_write_key_that_is_not_unicode_is_401(collector):
    client, store = collector
    answer = client.post("/v1/track", data=b'{"writeKey":"\\ud800","event":"E","userId":"u"}',
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 401 and answer.get_json()["code"] == "unauthorized"
    assert store.list(limit=10) == []


def test_a_webhook_payload_the_store_cannot_hold_is_400_and_kept_as_rejected(collector):
    client, store = collector
    auth = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    answer = client.post("/sources/gladly", data=b'{"id":"d-1","type":"x","content":{"body":"\\udc00"}}',
                         headers={"Authorization": auth, "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.get_json()["code"] == "invalid_payload"
    assert "content.body: the text is not valid Unicode" in answer.get_json()["message"]
    [record] = store.list(limit=10)
    assert (record.destination, record.state, record.message_id) == ("source:gladly", REJECTED, "gladly:d-1")
    assert store.get(record.id).event["content"] == {"body": "\ufffd"}


# --------------------------------------------------------------------------- through the real server


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_eventmap_serve_rejects_each_poison_alone_on_both_stores(tmp_path, request, backend_name):
    url = "sqlite:///events.db"
    if backend_name == "postgres":
        url = request.getfixturevalue("postgres_url")
        open_store(url, upgrade=True).close()
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    config.write_text(config.read_text().replace("storage: sqlite:///events.db", f"storage: '{url}'"))
    ids = [f"m-{uuid.uuid4()}" for _ in range(100)]
    items = [good(i) for i in ids]
    poisoned = {index * 20 + 3: text.replace("{id}", ids[index * 20 + 3]) for index, (text, _) in
                enumerate(POISONS.values())}
    for index, text in poisoned.items():
        items[index] = text
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        answer = server.post("/v1/batch", data=batch_body(items))
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 95
        assert [r["index"] for r in answer.json()["rejected"]] == sorted(poisoned)
        single = server.post("/v1/track", data=POISONS["NaN"][0].replace("{id}", "single").encode())
        assert single.status_code == 400 and "properties.v: NaN is not a number" in single.json()["message"]
        assert "Traceback" not in server.output()
    with open_store(url, base=tmp_path) as store:
        states = {(r.message_id, r.destination): r.state for r in store.list(limit=10000)}
    for index, message_id in enumerate(ids):
        if index in poisoned:
            assert states.get((message_id, INTAKE)) == REJECTED and (message_id, "planhat") not in states
        else:
            assert states[(message_id, "planhat")] == QUEUED
    assert states[("single", INTAKE)] == REJECTED


def test_eventmap_enqueue_rejects_a_poison_line_alone(tmp_path, backend):
    lines = [good("line-1"), POISONS["1e400"][0].replace("{id}", "line-2"), good("line-3")]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    backend.open().close()
    done = subprocess.run([sys.executable, "-m", "engine", "enqueue", "--config", str(config), "--store", backend.url,
                           str(tmp_path / "events.jsonl")], capture_output=True, text=True, cwd=REPO,
                          env=environment(), timeout=120)
    assert done.returncode == EXIT_REJECTED, done.stderr
    [line] = [json.loads(out) for out in done.stdout.splitlines()]
    assert line["line"] == 2 and line["errors"][0]["path"] == "context.n"
    assert "Traceback" not in done.stderr
    with backend.open() as store:
        states = {(r.message_id, r.destination): r.state for r in store.list(limit=100)}
    assert states[("line-2", INTAKE)] == REJECTED
    assert states[("line-1", "planhat")] == states[("line-3", "planhat")] == QUEUED


# --------------------------------------------------------------------------- a route's condition (issue 23, item 1)

@pytest.mark.parametrize("intake", ["validate", "queue"])
def test_a_route_condition_that_cannot_be_evaluated_on_some_events_stops_none_of_the_others(tmp_path, intake):
    """``contains(properties.plan, 'pro')`` on an identify without properties raised through intake: in
    validate mode the whole batch was answered 500, in queue mode the inbox processor failed each turn and
    stalled. Now such an event is rejected at that destination alone, with the reason."""
    with ok_vendor() as vendor:
        url = vendor.url_for("").rstrip("/")
        config = write_config(tmp_path, url, "http://127.0.0.1:9/gladly", more_destinations=f"""\
            segment:
              settings: {{write_key: segment-key, base_url: "{url}/segment"}}
              where: "contains(properties.plan, 'pro')"
            """)
        if intake == "queue":
            config.write_text(config.read_text() + "server:\n  intake: queue\n", encoding="utf-8")
        tracks, identifies = [], []
        with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
            for request in range(20):   # 20 requests of 5 events; every other one carries a poison identify
                batch = [{"type": "track", "event": "Upgraded", "userId": "u", "messageId": f"t{request}-{n}",
                          "properties": {"plan": "pro"}} for n in range(4)]
                tracks += [event["messageId"] for event in batch]
                if request % 2 == 0:
                    batch.insert(2, {"type": "identify", "userId": "u", "messageId": f"i{request}",
                                     "traits": {"email": "u@example.com"}})
                    identifies.append(f"i{request}")
                answer = server.post("/v1/batch", {"batch": batch})
                assert answer.status_code == 200, answer.text
            with open_store("sqlite:///events.db", base=tmp_path) as store:
                def states() -> dict:
                    return {(r.message_id, r.destination): r.state for r in store.list(limit=10000)}
                wait_for(lambda: all(states().get((m, "segment")) == "delivered" for m in tracks), 60,
                         "every track delivered to segment")
                found = states()
                reasons = {r.message_id: r.reason for r in store.list(destination="segment", state=REJECTED)}
    for message_id in identifies:
        assert found[(message_id, "segment")] == REJECTED
        assert reasons[message_id] == "the route's condition cannot be evaluated on this event"
        assert found[(message_id, "planhat")] in ("queued", "retrying", "delivered")   # the other destination has it


def test_offline_rendering_says_the_same_for_a_condition_that_cannot_be_evaluated():
    """``eventmap batch`` and the library (Engine.render_all) reject the event at that destination, as intake does."""
    from engine import Engine
    engine = Engine()
    routes = [engine.route("segment", {"write_key": "k"}, where="contains(properties.plan, 'pro')"),
              engine.route("planhat", {"tenant_token": "t"})]
    segment, planhat = engine.render_all({"type": "identify", "userId": "u", "messageId": "m"}, routes)
    assert (segment.status, segment.reason) == (REJECTED, "the route's condition cannot be evaluated on this event")
    assert segment.errors[0].path == "where" and "contains()" in segment.errors[0].message
    assert planhat.status == "send"
