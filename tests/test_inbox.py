"""``server.intake: queue``: requests stored whole, answered at once, turned into events exactly once by the
inbox processor, on both stores; and the server around it with a real SDK, a real stand-in and a SIGKILL."""
from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import requests
import segment.analytics as analytics
from serve_harness import WRITE_KEY, BatchSenders, Server, environment, ok_vendor, wait_for, write_config
from werkzeug.test import Client

from engine import Engine
from engine.intake import Intake
from engine.paths import MAPPINGS_DIR
from engine.serve import Collector
from engine.serve.config import load_serve_config
from engine.serve.inbox import InboxWorker
from engine.serve.setup import build
from engine.store import INTAKE, QUEUED, REJECTED, SKIPPED, Received, open_store

T0 = 1_700_000_000.0


def batch_body(*events, **envelope) -> bytes:
    return json.dumps({"batch": list(events), **envelope}).encode()


def track(message_id: str, **more) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": message_id,
            "timestamp": "2023-11-14T22:13:00Z", **more}


def processor(store, *names: str, owner: str = "p1", clock=lambda: T0) -> InboxWorker:
    engine = Engine()
    settings = {"segment": {"write_key": "k"}, "planhat": {"tenant_token": "t"}}
    routes = [engine.route(name, settings[name]) for name in names]
    return InboxWorker(Intake(engine, routes, store, dedupe_window=3600, clock=clock), store, owner=owner,
                       lease_for=60, clock=clock)


# --------------------------------------------------------------------------- the store and the processor

def test_a_processor_turns_each_stored_request_into_its_events_once(store):
    store.receive([Received("batch", batch_body(track("m1"), track("m2")), T0, "203.0.113.7"),
                   Received("track", json.dumps(track("m3")).encode(), T0 + 1, None)])
    assert store.waiting_requests() == 2
    worker = processor(store, "segment", "planhat")

    assert worker.run_once(T0 + 2) == 2
    assert worker.run_once(T0 + 2) == 0   # nothing left: the same requests are never made twice
    assert store.waiting_requests() == 0
    events = {e.message_id: e for e in store.events(_query())}
    assert set(events) == {"m1", "m2", "m3"}
    assert {d.destination for d in events["m1"].deliveries} == {"segment", "planhat"}
    assert events["m1"].event["context"]["ip"] == "203.0.113.7"   # the address the server decided on
    assert events["m1"].event["receivedAt"] == "2023-11-14T22:13:20.000Z"   # when the request came, not later
    assert worker.progress() == "(inbox): 3 events made, 0 requests waiting"


def test_a_turn_writes_its_requests_in_short_transactions_each_made_once(store):
    store.receive([Received("batch", batch_body(track(f"r{r}-a"), track(f"r{r}-b")), T0 + r) for r in range(7)])
    worker = processor(store, "segment")
    worker.events_per_write = 3   # two requests (four events) per transaction
    assert worker.run_once(T0 + 10) == 7
    assert store.waiting_requests() == 0
    made = sorted(e.message_id for e in store.events(_query()))
    assert made == sorted(f"r{r}-{x}" for r in range(7) for x in "ab")


def test_rejected_and_duplicate_events_of_a_stored_request_are_recorded_not_lost(store):
    bad = {"type": "track", "userId": "u-1", "messageId": "bad-1"}   # no event name
    store.receive([Received("batch", batch_body(track("m1"), bad, track("m1")), T0)])
    processor(store, "segment").run_once(T0 + 1)

    events = {e.message_id: e for e in store.events(_query())}
    assert [(d.destination, d.state) for d in events["bad-1"].deliveries] == [(INTAKE, REJECTED)]
    states = sorted(d.state for e in store.events(_query()) if e.message_id == "m1" for d in e.deliveries)
    assert states == [QUEUED, SKIPPED]   # the second m1 of the batch is a duplicate


def test_a_lease_lost_to_another_processor_writes_nothing_and_the_request_is_made_once(store):
    store.receive([Received("batch", batch_body(track("m1")), T0)])
    taken = store.take_received(10, "dead-processor", T0, 60)   # a processor that dies after taking
    assert [r.call for r in taken] == ["batch"]
    assert store.take_received(10, "p2", T0 + 30, 60) == []   # still leased

    later = processor(store, "segment", owner="p2", clock=lambda: T0 + 61)
    assert later.run_once(T0 + 61) == 1   # the lease ran out: another processor takes it
    assert store.accept_received([taken[0].id], "dead-processor", [], T0 + 62) is None   # too late: nothing written
    assert [e.message_id for e in store.events(_query())] == ["m1"]


def test_a_clean_stop_gives_taken_requests_back(store):
    store.receive([Received("batch", batch_body(track("m1")), T0)])
    assert store.take_received(10, "p1", T0, 60)
    store.release("p1")
    assert [r.call for r in store.take_received(10, "p2", T0 + 1, 60)] == ["batch"]


def test_the_inbox_size_counts_requests_and_the_bytes_of_their_bodies_taken_or_not(store):
    assert store.inbox_size() == (0, 0)
    bodies = [batch_body(track(f"s{n}", properties={"pad": "x" * (100 * n)})) for n in range(4)]
    store.receive([Received("batch", body, T0) for body in bodies])
    store.take_received(2, "p1", T0, 60)   # taken but not yet made into events: still in the inbox
    assert store.inbox_size() == (4, sum(len(body) for body in bodies))


def test_an_unreadable_stored_request_is_kept_as_a_rejection(store):
    store.receive([Received("batch", b"\xff not json", T0)])
    processor(store, "segment").run_once(T0 + 1)
    [event] = store.events(_query())
    assert [(d.destination, d.state, d.reason) for d in event.deliveries] == [
        (INTAKE, REJECTED, "the stored request cannot be read")]
    assert store.waiting_requests() == 0


def deliveries_per_message(store, destination: str) -> dict[str, int]:
    """{messageId: how many deliveries of ``destination`` it has}: each should have one."""
    seen: dict[str, int] = {}
    after = 0
    while page := store.list(destination=destination, limit=1000, after_id=after):
        for record in page:
            seen[record.message_id] = seen.get(record.message_id, 0) + 1
        after = page[-1].id
    return seen


def _query():
    from engine.store import EventQuery
    return EventQuery(limit=100)


def test_receive_later_returns_at_once_and_calls_back_once_the_requests_are_durable(store):
    heard: list[BaseException | None] = []
    durable = threading.Event()

    def then(error):
        heard.append(error)
        durable.set()

    store.receive_later([Received("track", b'{"userId": "u"}', T0, "10.0.0.1"),
                         Received("batch", batch_body(track("m1")), T0, None)], then)
    assert durable.wait(10) and heard == [None]
    kept = store.take_received(10, "p1", T0, 60)
    assert [(r.call, r.ip) for r in kept] == [("track", "10.0.0.1"), ("batch", None)]


def test_sqlite_writers_of_every_process_take_turns_on_the_writer_lock_file(tmp_path):
    """A write waits while another process holds the turn (the lock file beside the store), and goes on
    the moment it is released."""
    store = open_store(f"sqlite:///{tmp_path / 'turns.db'}")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, os, sys
        fd = os.open({str(tmp_path / 'turns.db-writer')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("holding", flush=True)
        sys.stdin.read()   # until the test closes stdin
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        written = threading.Event()
        writer = threading.Thread(target=lambda: (store.receive([Received("track", b"{}", T0, None)]), written.set()))
        writer.start()
        assert not written.wait(0.5), "the write waited for the other process's turn"
        holder.stdin.close()
        assert written.wait(10), "the write went on once the turn was released"
        writer.join(10)
    finally:
        holder.kill()
        holder.wait()
    assert store.waiting_requests() == 1
    store.close()


# --------------------------------------------------------------------------- the server in queue mode

def queue_config(folder, vendor: str):
    path = write_config(folder, vendor, "http://127.0.0.1:9")
    path.write_text(path.read_text() + "server:\n  intake: queue\n", encoding="utf-8")
    return path


def test_the_sdk_gets_its_200_at_once_and_the_background_process_delivers(tmp_path):
    with ok_vendor() as vendor:
        queue_config(tmp_path, vendor.url_for("").rstrip("/"))
        with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
            sdk = analytics.Client(WRITE_KEY, host=server.url, sync_mode=True, max_retries=0)
            sdk.identify("ada", {"email": "ada@example.com", "name": "Ada"})
            sdk.track("ada", "Order Completed", {"order_id": "o-9", "revenue": 10})
            answer = server.post("/v1/batch", {"batch": [{"type": "track", "userId": "u"}]})   # no event name
            assert answer.status_code == 200 and answer.json() == {"success": True}   # as Segment answers
            with open_store("sqlite:///events.db", base=tmp_path) as store:
                wait_for(lambda: store.counts(time.time()).get("planhat", {}).get("delivered") == 2, 30,
                         "both SDK events delivered to planhat")
                wait_for(lambda: store.counts(time.time()).get(INTAKE, {}).get(REJECTED) == 1, 10,
                         "the bad event kept as rejected")
                assert store.waiting_requests() == 0


def test_a_malformed_request_is_still_refused_while_the_client_can_hear_why(tmp_path):
    queue_config(tmp_path, "http://127.0.0.1:9")
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as server:
        assert server.post("/v1/batch", {"batch": []}).status_code == 400
        assert server.post("/v1/batch", data=b"{not json").status_code == 400
        assert server.post("/v1/batch", {"batch": [track("m1")]}, key="wrong").status_code == 401
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            assert store.waiting_requests() == 0


def test_the_write_key_in_a_browser_body_is_not_stored(tmp_path):
    queue_config(tmp_path, "http://127.0.0.1:9")
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as server:
        body = json.dumps({"writeKey": WRITE_KEY, "batch": [{**track("m1"), "writeKey": WRITE_KEY}]}).encode()
        answer = requests.post(server.url + "/v1/batch", data=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert answer.status_code == 200
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert "\neventmap_inbox_requests 1\n" in metrics   # nothing processes it: --intake-only
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            [kept] = store.take_received(10, "test", time.time(), 60)
    assert WRITE_KEY.encode() not in kept.body and json.loads(kept.body)["batch"][0]["messageId"] == "m1"


def test_a_body_with_a_write_key_and_an_unstorable_value_is_stored_and_the_event_rejected_later(tmp_path):
    queue_config(tmp_path, "http://127.0.0.1:9")
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as server:
        body = ('{"writeKey": "' + WRITE_KEY + '", "batch": [{"type": "track", "userId": "u",'
                ' "event": "Bad \\ud800", "messageId": "s1"}]}').encode()   # a lone surrogate, escaped
        answer = requests.post(server.url + "/v1/batch", data=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert answer.status_code == 200, answer.text
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        processor(store, "segment", clock=time.time).run_once()
        [event] = store.events(_query())
    assert WRITE_KEY not in json.dumps(event.event)
    assert [(d.destination, d.state) for d in event.deliveries] == [(INTAKE, REJECTED)]   # the lone surrogate


def test_sigkill_in_queue_mode_loses_nothing_acknowledged(tmp_path):
    """Senders post until the whole server is SIGKILLed; then ``eventmap deliver --until-idle`` finishes the
    inbox, and every acknowledged event is in the store, once."""
    queue_config(tmp_path, "http://127.0.0.1:9")
    server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "2").start()
    with BatchSenders(server.url) as senders:
        wait_for(lambda: len(senders.acknowledged) >= 400, 30, "400 acknowledged events")
        server.kill()
    acknowledged = senders.acknowledged

    done = subprocess.run([sys.executable, "-m", "engine", "deliver", "--config", "eventmap.yaml", "--until-idle",
                           "--dry-run"], cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(inbox):" in done.stderr and "0 requests waiting" in done.stderr
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        assert store.waiting_requests() == 0
        seen = deliveries_per_message(store, "planhat")
    missing = set(acknowledged) - set(seen)
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert max(seen.values()) == 1   # each request became its events once


def test_sigkill_while_the_processor_works_makes_each_request_once(tmp_path):
    """``eventmap deliver`` killed mid-inbox; a second run finishes it: every event of every stored request is
    there exactly once (a request's events and its removal from the inbox are one transaction)."""
    (tmp_path / "eventmap.yaml").write_text(   # tracks are skipped: nothing to send, the inbox is the work
        "storage: sqlite:///events.db\nserver: {intake: queue}\ndelivery: {lease: 1s}\ndestinations:\n  planhat:\n"
        "    settings: {tenant_token: t, base_url: 'http://127.0.0.1:9'}\n    types: [identify]\n", encoding="utf-8")
    requests_made = 1000
    ids = [f"r{r}-{i}" for r in range(requests_made) for i in range(20)]
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        store.receive([Received("batch", batch_body(*(track(m) for m in ids[r * 20:(r + 1) * 20])), time.time())
                       for r in range(requests_made)])

    def made(store) -> int:
        return sum(store.counts(time.time()).get("planhat", {}).values())

    command = [sys.executable, "-m", "engine", "deliver", "--config", "eventmap.yaml", "--dry-run"]
    first = subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            wait_for(lambda: made(store) >= 500, 60, "the processor under way")
            assert store.waiting_requests() > 0   # killed mid-inbox, not after it
    finally:
        first.kill()
        first.wait(10)
    time.sleep(1.5)   # the killed processor's lease on the requests it had taken runs out

    done = subprocess.run([*command, "--until-idle"], cwd=tmp_path, env=environment(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        assert store.waiting_requests() == 0
        seen = deliveries_per_message(store, "planhat")
    assert set(seen) == set(ids) and set(seen.values()) == {1}


def test_in_queue_mode_a_request_the_inbox_cannot_take_is_answered_500_and_the_server_goes_on(tmp_path):
    queue_config(tmp_path, "http://127.0.0.1:9")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        assert server.post("/v1/track", track("m1")).status_code == 200
        broken = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
        broken.execute("ALTER TABLE inbox RENAME TO inbox_away")   # the write now fails: no such table
        answer = server.post("/v1/track", track("m2"))
        assert answer.status_code == 500, answer.text
        assert answer.json() == {"success": False, "code": "internal",
                                 "message": "the server failed; the request was not stored, send it again"}
        assert "could not be stored" in server.output() and "no such table: inbox" in server.output()
        broken.execute("ALTER TABLE inbox_away RENAME TO inbox")
        broken.close()
        assert server.post("/v1/track", track("m3")).status_code == 200
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert 'eventmap_refused_total{status="500"} 1' in metrics and "\neventmap_inbox_requests 2\n" in metrics


def test_in_queue_mode_requests_past_queue_depth_waiting_for_the_inbox_are_answered_429(tmp_path):
    path = queue_config(tmp_path, "http://127.0.0.1:9")
    path.write_text(path.read_text().replace("server:\n  intake: queue\n",
                                             "server:\n  intake: queue\n  threads: 1\n  queue_depth: 1\n"
                                             "  retry_after: 2s\n"), encoding="utf-8")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        assert server.post("/v1/track", track("m0")).status_code == 200   # the store exists
        blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")                                  # the store's write lock, held
        answers: dict[str, object] = {}

        def send(message_id: str) -> None:
            try:
                answers[message_id] = requests.post(server.url + "/v1/track", json=track(message_id),
                                                    auth=(WRITE_KEY, ""), timeout=30).status_code
            except requests.RequestException as exc:
                answers[message_id] = exc

        waiting = [threading.Thread(target=send, args=(f"w{i}",)) for i in range(2)]   # threads + queue_depth
        for thread in waiting:
            thread.start()
        time.sleep(1)   # both have arrived and wait for the inbox write
        busy = server.post("/v1/track", track(str(uuid.uuid4())))
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "2"
        assert busy.json()["code"] == "busy"
        blocker.execute("COMMIT")
        blocker.close()
        for thread in waiting:
            thread.join(30)
        assert answers == {"w0": 200, "w1": 200}   # the waiting requests were kept and acknowledged


# --------------------------------------------------------------------------- the inbox's bound (issue 23, item 3)

def test_past_inbox_max_requests_intake_answers_429_with_retry_after_and_counts_it(tmp_path):
    path = queue_config(tmp_path, "http://127.0.0.1:9")
    path.write_text(path.read_text().replace("server:\n  intake: queue\n", "server:\n  intake: queue\n"
                                             "  inbox_max_requests: 3\n  retry_after: 3s\n"), encoding="utf-8")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        assert [server.post("/v1/track", track(f"m{n}")).status_code for n in range(3)] == [200, 200, 200]
        full = server.post("/v1/track", track("m3"))
        assert full.status_code == 429 and full.headers["Retry-After"] == "3"
        assert full.json()["code"] == "inbox_full" and "server.inbox_max_requests 3" in full.json()["message"]
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert "\neventmap_inbox_full_total 1\n" in metrics and 'eventmap_refused_total{status="429"} 1' in metrics
        assert "\neventmap_inbox_requests 3\n" in metrics
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            processor(store, "segment", clock=time.time).run_once()   # the processor catches up
            assert store.waiting_requests() == 0
            wait_for(lambda: server.post("/v1/track", track("m4")).status_code == 200, 10, "room in the inbox again")
            assert {e.message_id for e in store.events(_query())} == {"m0", "m1", "m2"}   # m3 was never kept


def test_past_inbox_max_mb_intake_answers_429(tmp_path):
    path = queue_config(tmp_path, "http://127.0.0.1:9")
    path.write_text(path.read_text().replace("server:\n  intake: queue\n", "server:\n  intake: queue\n"
                                             "  inbox_max_mb: 1\n"), encoding="utf-8")
    setup = build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())
    client = Client(Collector(setup.config, setup.engine, setup.routes, setup.open_store))
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}

    def post(n: int) -> int:   # about 400 KB a request
        body = batch_body(*(track(f"r{n}-{i}", properties={"pad": "x" * 10_000}) for i in range(40)))
        return client.post("/v1/batch", data=body, headers={**auth, "Content-Type": "application/json"}).status_code

    assert [post(n) for n in range(3)] == [200, 200, 429]
    with setup.open_store() as store:
        requests_kept, size = store.inbox_size()
    assert requests_kept == 2 and 800_000 < size <= 1 << 20
