"""A vendor's answer cannot steer a request, and one request's trouble is its own (issue 23, items 2, 4, 5).

Against real HTTP servers on localhost (two of them, on two ports, where a redirect leads elsewhere;
raw sockets where an answer trickles or never ends), through the delivery worker, multi-step actions
and the Gladly source's lookups, on a real SQLite store:

* a header value HTTP cannot carry rejects that event alone, logged as a problem with the request,
  and the breaker never hears of it;
* a redirect is followed only on the same origin, and only where it keeps the method and body;
  elsewhere the 3xx is the answer, final, and the other server hears nothing (no token, no body);
* an answer is read up to 1 MiB: a step or lookup that needs a longer one fails with the reason, and
  the store keeps an excerpt; the client's timeout is a deadline for the whole request.
"""
from __future__ import annotations

import gzip
import json
import logging
import random
import socket
import threading
import time
import uuid

import pytest
from conftest import write_mappings
from pytest_httpserver import HTTPServer

from engine import Engine
from engine.answers import ANSWER_LIMIT, RequestError, TransportError
from engine.deliver import DestinationWorker, DryRunClient, HttpClient, RetryPolicy, drain
from engine.intake import Intake
from engine.paths import MAPPINGS_DIR
from engine.render.request import Request
from engine.serve.source_worker import SourceWorker
from engine.store import DEAD, DELIVERED, QUEUED, REJECTED, RETRYING, NewDelivery, NewEvent, open_store

TOKEN = "hook-token-6a1f0c"
HOOK = """\
name: Hook
settings:
  type: object
  required: [base, token]
  properties:
    base: {type: string}
    token: {type: string, secret: true}
limits: {concurrency: 1}
actions:
  track:
    request:
      url: "{{ settings.base }}/track"
      headers: {X-Api-Token: "{{ settings.token }}", X-Ref: "{{ event.properties.ref }}"}
    body:
      messageId: {"@path": event.messageId}
  identify:
    steps:
      lookup:
        request:
          method: GET
          url: "{{ settings.base }}/users/{{ event.userId | url_segment }}"
          headers: {X-Api-Token: "{{ settings.token }}"}
      write:
        request:
          url: "{{ settings.base }}/people"
          headers: {X-Api-Token: "{{ settings.token }}"}
        body:
          id: {"@path": steps.lookup.body.id}
          messageId: {"@path": event.messageId}
"""


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def other():
    """A second server on another port: where a redirect would lead (169.254.169.254 stands here)."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/latest/meta-data/iam").respond_with_json({"id": "stolen-credentials"})
    server.start()
    yield server
    server.clear()
    server.stop()


class Hook:
    """The Hook destination against ``base``, a store, and a worker that drains it on a fake clock."""

    def __init__(self, tmp_path, base: str, timeout: float = 5.0):
        self.engine = Engine(write_mappings(tmp_path, {"hook.yaml": HOOK}))
        self.route = self.engine.route("hook", {"base": base, "token": TOKEN})
        self.store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
        self.clock = Clock()
        self.intake = Intake(self.engine, [self.route], self.store, clock=self.clock)
        self.worker = DestinationWorker(self.route, self.store, HttpClient(timeout=timeout), owner="t",
                                        clock=self.clock, rng=random.Random(1),
                                        policy=RetryPolicy(retry_for=30, backoff=1, max_backoff=4))

    def accept(self, *events) -> None:
        self.intake.accept(list(events))

    def drain(self, wait: bool = True) -> None:
        drain([self.worker], self.store, self.clock, self.clock.advance if wait else None)

    def record(self, message_id: str):
        [found] = [r for r in self.store.list(limit=1000) if r.message_id == message_id]
        return self.store.get(found.id)


@pytest.fixture
def hook(tmp_path, httpserver):
    made = Hook(tmp_path, httpserver.url_for("").rstrip("/"))
    yield made
    made.store.close()


def track(message_id: str, ref: str = "ok") -> dict:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id,
            "properties": {"ref": ref}}


def identify(message_id: str, user: str = "u1") -> dict:
    return {"type": "identify", "userId": user, "messageId": message_id, "traits": {"name": "Ann"}}


def posted_ids(server: HTTPServer, path: str) -> list[str]:
    return [json.loads(request.data)["messageId"] for request, _ in server.log if request.path == path]


# --------------------------------------------------------------------------- item 2: requests that cannot go

@pytest.mark.parametrize("bad", ["雪-snow", "Łukasz", "José", "a\nX-Injected: 1"])
def test_a_header_http_cannot_carry_rejects_its_event_alone_and_the_turn_goes_on(hook, httpserver, caplog, bad):
    httpserver.expect_request("/track").respond_with_json({"ok": True})
    events = [track(f"m{n}") for n in range(12)]
    events[3], events[8] = track("bad-1", bad), track("bad-2", f"x {bad}")
    hook.accept(*events)
    with caplog.at_level(logging.INFO, logger="eventmap"):
        hook.drain(wait=False)   # nothing waits: the bad ones are final at once, the rest delivered
    assert sorted(posted_ids(httpserver, "/track")) == sorted(f"m{n}" for n in range(12) if n not in (3, 8))
    for message_id in ("bad-1", "bad-2"):
        record = hook.record(message_id)
        assert (record.state, record.reason) == (REJECTED, "the request cannot be sent as built")
        [error] = record.errors
        assert error["path"] == "headers.X-Ref" and "must be ASCII" in error["message"]
        assert f"U+{ord(next(c for c in bad if not ' ' <= c <= '~')):04X}" in error["message"]
    assert hook.worker.health.failing_since is None   # the vendor did not fail: the breaker never heard it
    assert "the request cannot be sent" in caplog.text and "is failing" not in caplog.text


def test_the_dry_run_sink_refuses_what_the_live_client_would():
    request = Request("Hook", "track", "POST", "http://127.0.0.1:9/track", {"X-Ref": "雪-snow"}, {}, {})
    with pytest.raises(RequestError) as refused:
        DryRunClient().send(request)
    with pytest.raises(RequestError) as live:
        HttpClient(timeout=1).send(request)
    assert str(refused.value) == str(live.value) and refused.value.path == "headers.X-Ref"


def test_a_url_that_does_not_parse_is_the_requests_own_final_verdict():
    request = Request("Hook", "track", "POST", "http://exa mple.test/track", {}, {}, {})
    with pytest.raises(RequestError) as refused:
        HttpClient(timeout=1).send(request)
    assert refused.value.final and "cannot be sent as built" in str(refused.value)


# --------------------------------------------------------------------------- item 4: redirects

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_port_is_not_followed_and_nothing_reaches_it(hook, httpserver, other, status):
    target = other.url_for("/latest/meta-data/iam")
    httpserver.expect_request("/track").respond_with_data("", status=status, headers={"Location": target})
    hook.accept(track("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and record.reason == f"{status} is final: a redirect eventmap does not follow " \
                                                     f"(the answer says where and why)"
    assert "not followed" in record.last_error and "another scheme, host or port" in record.last_error
    assert len(record.history) == 1          # final at once: no retry
    assert other.log == []                   # no token, no method, no body went there


def test_a_307_on_the_same_origin_is_followed_with_its_method_body_and_token(hook, httpserver):
    httpserver.expect_request("/track").respond_with_data("", status=307, headers={"Location": "/v2/track"})
    httpserver.expect_request("/v2/track", method="POST").respond_with_json({"ok": True})
    hook.accept(track("m1"))
    hook.drain()
    assert hook.record("m1").state == DELIVERED
    moved = [request for request, _ in httpserver.log if request.path == "/v2/track"]
    assert [(r.method, json.loads(r.data)["messageId"], r.headers["X-Api-Token"]) for r in moved] == [
        ("POST", "m1", TOKEN)]


def test_a_302_on_the_same_origin_does_not_turn_a_delivery_into_a_get(hook, httpserver):
    httpserver.expect_request("/track").respond_with_data("", status=302, headers={"Location": "/elsewhere"})
    hook.accept(track("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and "would resend the POST as a GET without its body" in record.last_error
    assert [request.path for request, _ in httpserver.log] == ["/track"]


def test_a_lookup_step_redirected_to_another_host_fails_and_no_later_step_reads_that_answer(hook, httpserver, other):
    httpserver.expect_request("/users/u1").respond_with_data(
        "", status=302, headers={"Location": other.url_for("/latest/meta-data/iam")})
    hook.accept(identify("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and "got HTTP 302" in record.reason and "not followed" in record.reason
    assert other.log == []
    assert [request.path for request, _ in httpserver.log] == ["/users/u1"]   # the write step never ran


def test_redirects_on_the_same_origin_stop_after_five(hook, httpserver):
    for hop in range(7):
        httpserver.expect_request(f"/users/u{hop}").respond_with_data(
            "", status=301, headers={"Location": f"/users/u{hop + 1}"})
    hook.accept(identify("m1", user="u0"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and "more than 5 redirects in a row" in record.reason
    assert [request.path for request, _ in httpserver.log] == [f"/users/u{hop}" for hop in range(6)]


GLADLY_PAYLOAD = MAPPINGS_DIR.parent / "fixtures" / "gladly" / "payloads" / "conversation-created.json"


class Gladly:
    """The Gladly source against ``base``, its payloads accepted as the server does and mapped by its worker."""

    def __init__(self, tmp_path, base: str):
        self.engine = Engine()
        source = self.engine.source("gladly", {"org": "acme", "agent_email": "api@acme.example", "api_token": TOKEN,
                                               "base_url": base}, environ={})
        self.store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
        intake = Intake(self.engine, [], self.store)
        self.worker = SourceWorker("source:gladly", source, intake, self.store, HttpClient(timeout=5))

    def map(self):
        payload = json.loads(GLADLY_PAYLOAD.read_text(encoding="utf-8"))
        payload["id"] = uuid.uuid4().hex
        self.store.accept([NewEvent(payload, f"gladly:{payload['id']}", [NewDelivery("source:gladly", QUEUED)])],
                          time.time())
        assert self.worker.run_once(time.time()) == 1
        [record] = self.store.list(limit=10)
        return self.store.get(record.id)


@pytest.fixture
def gladly(tmp_path, httpserver):
    made = Gladly(tmp_path, httpserver.url_for("").rstrip("/"))
    yield made
    made.store.close()


def test_a_source_lookup_redirected_to_another_host_is_not_followed(gladly, httpserver, other):
    httpserver.expect_request("/api/v1/conversations/OOdwYvVpRiKIpMYtBbFR4A").respond_with_data(
        "", status=302, headers={"Location": other.url_for("/latest/meta-data/iam")})
    record = gladly.map()
    assert record.state == DEAD and "got HTTP 302" in record.reason
    assert other.log == []


# --------------------------------------------------------------------------- item 5: answer size and deadline

def big_json(size: int) -> bytes:
    return json.dumps({"id": "x", "padding": "p" * size}).encode()


def test_a_lookup_answer_over_the_limit_fails_the_step_and_the_store_keeps_no_more_than_an_excerpt(hook, httpserver):
    httpserver.expect_request("/users/u1").respond_with_data(big_json(8 * ANSWER_LIMIT),
                                                             content_type="application/json")
    hook.accept(identify("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and record.reason == ("step 'lookup' got an answer over 1 MiB, the most eventmap "
                                                      "reads of an answer: it cannot be used")
    assert record.history[-1].status == 200
    assert record.progress is None                      # the answer was never kept as a step's
    assert len(json.dumps(record.__dict__, default=str)) < 20_000
    assert [request.path for request, _ in httpserver.log] == ["/users/u1"]   # the write step never ran
    assert hook.worker.health.failing_since is None


def test_an_answer_of_exactly_the_limit_is_read_whole(hook, httpserver):
    body = big_json(ANSWER_LIMIT - len(big_json(0)))
    assert len(body) == ANSWER_LIMIT
    httpserver.expect_request("/users/u1").respond_with_data(body, content_type="application/json")
    httpserver.expect_request("/people").respond_with_json({"ok": True})
    hook.accept(identify("m1"))
    hook.drain()
    assert hook.record("m1").state == DELIVERED
    assert posted_ids(httpserver, "/people") == ["m1"]


def test_an_error_answer_over_the_limit_keeps_a_short_summary(hook, httpserver):
    httpserver.expect_request("/track").respond_with_data(b"E" * (5 * ANSWER_LIMIT), status=400)
    hook.accept(track("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DEAD and len(record.last_error) < 300 and record.last_error.startswith("Hook answered 400")


def test_a_compressed_answer_is_cut_at_the_limit_after_decompression(hook, httpserver):
    bomb = gzip.compress(b"0" * (64 * ANSWER_LIMIT))   # 64 MiB of zeros in about 64 KB
    httpserver.expect_request("/users/u1").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    hook.accept(identify("m1"))
    started = time.monotonic()
    hook.drain()
    assert time.monotonic() - started < 5
    assert "got an answer over 1 MiB" in hook.record("m1").reason


def test_a_source_lookup_answer_over_the_limit_fails_the_payload(gladly, httpserver):
    httpserver.expect_request("/api/v1/conversations/OOdwYvVpRiKIpMYtBbFR4A").respond_with_data(
        big_json(2 * ANSWER_LIMIT), content_type="application/json")
    record = gladly.map()
    assert record.state == DEAD
    assert record.reason.startswith("lookup 'conversation' got an answer over 1 MiB")


class Trickle:
    """A raw socket server whose answer comes a byte at a time and never ends: in its headers or its body; or
    (``reused``) a quick answer first, then the trickle on the same kept-alive connection."""

    def __init__(self, where: str):
        self.where = where
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if self.where == "reused":   # the pool keeps this connection: the next request comes on it
                conn.sendall(head + b"Content-Length: 2\r\n\r\n{}")
                conn.recv(65536)
            if self.where == "body":
                conn.sendall(head + b"Content-Length: 100000\r\n\r\n")
                head = b" " * 100000
            try:   # a byte every 0.1 s for 8 s at most: a client without a deadline waits all of it
                for byte in (head + b"X-Slow: " + b"x" * 100000)[:80]:
                    if self.stop.wait(0.1):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("where", ["headers", "body", "reused"])
def test_the_timeout_is_a_deadline_for_the_whole_request_however_the_answer_trickles(where):
    trickle = Trickle(where)
    client = HttpClient(timeout=1)
    request = Request("Hook", "track", "POST", trickle.url + "/track", {}, {}, {"a": 1})
    try:
        if where == "reused":
            assert client.send(request).body == {}
        started = time.monotonic()
        with pytest.raises(TransportError) as late:
            client.send(request)
        took = time.monotonic() - started
    finally:
        trickle.close()
    assert 1 <= took < 2.5, took   # each byte came well within the timeout: only a deadline ends it
    assert "no answer within 1s" in str(late.value)


def test_a_trickling_vendor_holds_a_delivery_no_longer_than_its_timeout(tmp_path):
    trickle = Trickle("body")
    hook = Hook(tmp_path, trickle.url, timeout=1)
    try:
        hook.accept(track("m1"))
        started = time.monotonic()
        hook.worker.run_once()
        assert time.monotonic() - started < 2.5
        record = hook.record("m1")
        assert record.state == RETRYING and record.history[0].status is None
        assert "no answer within 1s" in record.history[0].error
    finally:
        trickle.close()
        hook.store.close()


BATCHED = """\
name: Batched
settings:
  type: object
  required: [base]
  properties:
    base: {type: string}
batch:
  max_events: 10
  request:
    url: "{{ settings.base }}/batch"
    headers: {X-Refs: "{{ items | string }}"}
  envelope:
    body:
      batch: {"@path": items}
actions:
  track:
    request:
      url: "{{ settings.base }}/track"
    body:
      messageId: {"@path": event.messageId}
      ref: {"@path": event.properties.ref}
"""


def test_a_batch_request_that_cannot_be_sent_is_split_until_the_event_at_fault_stands_alone(tmp_path, httpserver):
    """The batch's header is made from every item: one item's text makes the whole request unsendable."""
    httpserver.expect_request("/batch").respond_with_json({"ok": True})
    engine = Engine(write_mappings(tmp_path, {"batched.yaml": BATCHED}))
    route = engine.route("batched", {"base": httpserver.url_for("").rstrip("/")})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        clock = Clock()
        events = [track(f"m{n}") for n in range(10)]
        events[6] = track("bad", "雪-snow")
        Intake(engine, [route], store, clock=clock).accept(events)
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="t", clock=clock)
        drain([worker], store, clock)
        states = {r.message_id: (r.state, r.reason) for r in store.list(limit=100)}
    delivered = [m for request, _ in httpserver.log for m in
                 (item["messageId"] for item in json.loads(request.data)["batch"])]
    assert sorted(delivered) == sorted(f"m{n}" for n in range(10) if n != 6)
    assert states["bad"] == (REJECTED, "the request cannot be sent as built")
    assert len(httpserver.log) <= 4   # halves, not one request per event


def test_a_json_answer_the_store_cannot_hold_is_kept_with_those_parts_replaced(hook, httpserver):
    httpserver.expect_request("/users/u1").respond_with_data('{"id": "a\\ud800", "score": NaN}',
                                                             content_type="application/json")
    httpserver.expect_request("/people").respond_with_json({"ok": True})
    hook.accept(identify("m1"))
    hook.drain()
    record = hook.record("m1")
    assert record.state == DELIVERED
    assert record.progress["lookup"]["body"] == {"id": "a\ufffd", "score": None}
    [(written, _)] = [entry for entry in httpserver.log if entry[0].path == "/people"]
    assert json.loads(written.data)["id"] == "a\ufffd"


def test_a_local_failure_is_never_counted_against_the_destination():
    """The breaker's rule: a verdict marked local (a request that failed here) does not open it; the same
    verdict from the vendor does."""
    from engine.deliver.health import Health
    from engine.store import Attempt, Finish
    retrying = Finish(7, RETRYING, Attempt(1.0, None, "the request could not be sent: OSError"), next_at=5.0)
    local = Health("hook", time.time)
    local.observe([retrying], {7: "m7"}, {7})
    assert local.failing_since is None and local.gate(time.time()) is None
    vendor = Health("hook", time.time)
    vendor.observe([retrying], {7: "m7"})
    assert vendor.failing_since is not None


class RefusingOne:
    """The real store, except that it refuses to write one delivery's verdict with its details (as it would
    a verdict holding what it cannot store); the verdict without them it takes."""

    def __init__(self, store, refused: str):
        self.store, self.refused = store, refused

    def __getattr__(self, name):
        return getattr(self.store, name)

    def finish(self, results, owner, now):
        if any(self.refused == (r.attempt.error if r.attempt else None) for r in results):
            raise ValueError("cannot store this verdict")
        return self.store.finish(results, owner, now)


def test_a_verdict_the_store_refuses_loses_nothing_else_of_its_turn(tmp_path, httpserver):
    refused = "Hook answered 400: {\"error\": \"no\"}"
    httpserver.expect_request("/track", json={"messageId": "bad"}).respond_with_json({"error": "no"}, status=400)
    httpserver.expect_request("/track").respond_with_json({"ok": True})
    hook = Hook(tmp_path, httpserver.url_for("").rstrip("/"))
    hook.worker.store = RefusingOne(hook.store, refused)
    hook.accept(*[track(f"m{n}") for n in range(3)], track("bad"), *[track(f"m{n}") for n in range(3, 6)])
    hook.drain(wait=False)
    assert {hook.record(f"m{n}").state for n in range(6)} == {DELIVERED}
    bad = hook.record("bad")
    assert bad.state == DEAD and bad.reason == "the verdict's details could not be stored (ValueError)"
    assert bad.history[0].status == 400 and bad.history[0].error is None
    hook.store.close()


STEPPED = """\
name: Stepped
settings:
  type: object
  required: [base]
  properties:
    base: {type: string}
actions:
  identify:
    steps:
      lookup:
        request:
          method: GET
          url: "{{ settings.base }}/users/{{ event.userId | url_segment }}"
      write:
        when: "contains(steps.lookup.body.plan, 'pro')"
        request:
          url: "{{ settings.base }}/people"
        body:
          messageId: {"@path": event.messageId}
"""


def test_a_step_condition_that_cannot_be_evaluated_rejects_that_event_alone(tmp_path, httpserver):
    """The lookup's answer for one user has no plan: the write step's condition fails on that event only."""
    httpserver.expect_request("/users/nobody").respond_with_json({"id": "nobody"})
    httpserver.expect_request("/users/u1").respond_with_json({"id": "u1", "plan": "pro"})
    httpserver.expect_request("/people").respond_with_json({"ok": True})
    engine = Engine(write_mappings(tmp_path, {"stepped.yaml": STEPPED}))
    route = engine.route("stepped", {"base": httpserver.url_for("").rstrip("/")})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        clock = Clock()
        events = [identify(f"m{n}") for n in range(6)]
        events[2] = identify("bad", user="nobody")
        Intake(engine, [route], store, clock=clock).accept(events)
        drain([DestinationWorker(route, store, HttpClient(timeout=5), owner="t", clock=clock)], store, clock)
        records = {r.message_id: store.get(r.id) for r in store.list(limit=100)}
    assert sorted(posted_ids(httpserver, "/people")) == sorted(f"m{n}" for n in range(6) if n != 2)
    bad = records["bad"]
    assert (bad.state, bad.reason) == (REJECTED, "the mapping could not be applied")   # a condition is mapping
    assert bad.errors[0]["path"].endswith(".when") and "cannot be evaluated on this event" in bad.errors[0]["message"]
    assert "JMESPathTypeError" in bad.errors[0]["message"] and "contains()" in bad.errors[0]["message"]
    assert bad.progress["lookup"]["body"] == {"id": "nobody"}   # the step that completed is kept


PROBE_SOURCE = """\
name: Probe
settings:
  type: object
  required: [base]
  properties:
    base: {type: string}
webhook:
  type: type
  id: id
lookups:
  user:
    when: "contains(payload.tags, 'vip')"
    request:
      method: GET
      url: "{{ settings.base }}/users/{{ payload.user | url_segment }}"
handlers:
  signup:
    lookups: [user]
    events:
      - type: track
        event: Signed Up
        userId: {"@path": payload.user}
        messageId: "{{ ('probe:' ~ payload.id) | uuid5 }}"
        properties:
          plan: {"@path": lookups.user.plan}
"""


def test_a_payload_whose_lookup_condition_cannot_be_evaluated_is_rejected_alone(tmp_path, httpserver):
    httpserver.expect_request("/users/ann").respond_with_json({"plan": "pro"})
    root = write_mappings(tmp_path, {"hook.yaml": HOOK})
    (root / "sources").mkdir()
    (root / "sources" / "probe.yaml").write_text(PROBE_SOURCE, encoding="utf-8")
    engine = Engine(root)
    source = engine.source("probe", {"base": httpserver.url_for("").rstrip("/")}, environ={})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        payloads = [{"id": "p1", "type": "signup", "user": "ann", "tags": ["vip"]},
                    {"id": "p2", "type": "signup", "user": "bob"},          # no tags: contains(null, ...)
                    {"id": "p3", "type": "signup", "user": "ann", "tags": []}]
        store.accept([NewEvent(p, f"probe:{p['id']}", [NewDelivery("source:probe", QUEUED)]) for p in payloads],
                     time.time())
        worker = SourceWorker("source:probe", source, Intake(engine, [], store), store, HttpClient(timeout=5))
        assert worker.run_once(time.time()) == 3
        states = {r.message_id: (r.state, r.reason) for r in store.list(destination="source:probe", limit=10)}
    assert states["probe:p1"][0] == states["probe:p3"][0] == DELIVERED
    assert states["probe:p2"] == (REJECTED, "the webhook payload cannot be mapped")   # its condition, named


ENVELOPED = """\
name: Batched
settings:
  type: object
  required: [base]
  properties:
    base: {type: string}
batch:
  max_events: 10
  request:
    url: "{{ settings.base }}/batch"
  envelope:
    body:
      batch: {"@path": items}
      vip: {"@if": "contains(items[0].tag, 'vip')", "@then": true}
actions:
  track:
    request:
      url: "{{ settings.base }}/track"
    body:
      messageId: {"@path": event.messageId}
      tag: {"@path": event.properties.tag}
"""


def test_a_batch_that_cannot_be_made_sends_each_event_with_its_own_request(tmp_path, httpserver):
    """The batch envelope's condition raises (contains() of a missing tag): the turn's events go one by one."""
    httpserver.expect_request("/track").respond_with_json({"ok": True})
    engine = Engine(write_mappings(tmp_path, {"batched.yaml": ENVELOPED}))
    route = engine.route("batched", {"base": httpserver.url_for("").rstrip("/")})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        clock = Clock()
        Intake(engine, [route], store, clock=clock).accept([track(f"m{n}") for n in range(4)])
        drain([DestinationWorker(route, store, HttpClient(timeout=5), owner="t", clock=clock)], store, clock)
        states = {r.message_id: r.state for r in store.list(limit=100)}
    assert states == {f"m{n}": DELIVERED for n in range(4)}
    assert sorted(posted_ids(httpserver, "/track")) == [f"m{n}" for n in range(4)]


def test_a_dead_letter_whose_batch_cannot_be_made_keeps_the_events_own_request(tmp_path, httpserver):
    httpserver.expect_request("/track").respond_with_json({"error": "down"}, status=503)
    engine = Engine(write_mappings(tmp_path, {"batched.yaml": ENVELOPED}))
    route = engine.route("batched", {"base": httpserver.url_for("").rstrip("/")})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        clock = Clock()
        Intake(engine, [route], store, clock=clock).accept([track("m1")])
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="t", clock=clock,
                                   policy=RetryPolicy(retry_for=5, backoff=1, max_backoff=2), rng=random.Random(2))
        drain([worker], store, clock, clock.advance)
        [record] = [store.get(r.id) for r in store.list(limit=10)]
    assert record.state == DEAD and record.request["url"].endswith("/track")
