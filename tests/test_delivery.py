"""Delivery through the outbox against a real HTTP server that injects faults.

Every test ends with each event delivered or dead-lettered with the reason.
Waiting (backoff, Retry-After, rate limits) runs on a fake clock, so the
suite never sleeps for a retry; only timeouts use a short real wait.
"""
from __future__ import annotations

import base64
import json
import random

import pytest

from engine import Engine
from engine.cli import main
from engine.deliver import DestinationWorker, HttpClient, RateLimiter, RetryPolicy, drain
from engine.intake import Intake
from engine.store import DEAD, DELIVERED, RETRYING, SKIPPED, open_store

from vendor_server import Answer, VendorServer

WRITE_KEY = "wk-secret-for-tests-7731"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def track(n: int, name: str = "Order Completed") -> dict:
    return {"type": "track", "event": name, "userId": f"user-{n}", "messageId": f"msg-{n:04d}",
            "timestamp": "2026-11-23T10:00:00Z", "properties": {"n": n}}


@pytest.fixture
def vendor():
    with VendorServer() as server:
        yield server


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as opened:
        yield opened


@pytest.fixture(scope="module")
def engine():
    return Engine()


def setup(engine, store, vendor, clock, *, batch=True, policy=RetryPolicy(retry_for=3600, backoff=1, max_backoff=60),
          timeout=2.0, rate=None, dedupe=86400.0):
    route = engine.route("segment", {"write_key": WRITE_KEY, "base_url": vendor.url})
    route.limits = route.limits.__class__(concurrency=1, rate=rate, batch=batch)
    intake = Intake(engine, [route], store, dedupe_window=dedupe, clock=clock)
    limiter = RateLimiter(rate, clock=clock, sleep=clock.advance) if rate else None
    worker = DestinationWorker(route, store, HttpClient(timeout=timeout), owner="test-worker", policy=policy,
                               clock=clock, limiter=limiter, rng=random.Random(7))
    return intake, worker


def finished(store):
    """{messageId: state} of every delivery, and nothing may be left pending."""
    records = store.list(limit=10_000)
    return {r.message_id: r.state for r in records}


def test_a_batch_of_events_is_delivered_once_in_one_request(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock)
    intake.accept([track(n) for n in range(25)])
    drain([worker], store, clock, clock.advance)
    assert sorted(vendor.delivered_ids()) == [f"msg-{n:04d}" for n in range(25)]
    assert [r.path for r in vendor.received] == ["/v1/batch"]
    assert set(finished(store).values()) == {DELIVERED}


def test_500s_are_retried_with_growing_randomized_waits(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(500, {"error": "boom"}), times=3)
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    record = store.get(store.list()[0].id)
    assert record.state == DELIVERED
    assert [a.status for a in record.history] == [500, 500, 500, 200]
    waits = [later.at - earlier.at for earlier, later in zip(record.history, record.history[1:])]
    # equal jitter: attempt n waits between half and all of 1s * 2**(n-1)
    for n, wait in enumerate(waits, 1):
        assert 2 ** (n - 1) / 2 <= wait <= 2 ** (n - 1)
    assert any(wait < 2 ** (n - 1) for n, wait in enumerate(waits, 1))  # randomized, not the bare ceiling
    assert "answered 500" in record.history[0].error


def test_429_waits_exactly_as_long_as_retry_after_says(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "120"}), times=1)
    intake.accept([track(1)])
    start = clock.now
    worker.run_once()
    pending = store.list()[0]
    assert pending.state == RETRYING and pending.next_at == pytest.approx(start + 120)
    assert worker.run_once() == 0  # not due yet
    drain([worker], store, clock, clock.advance)
    assert store.list()[0].state == DELIVERED
    assert clock.now - start == pytest.approx(120)


def test_an_answer_slower_than_the_timeout_is_retried(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False, timeout=0.2)
    vendor.answer(Answer(200, delay=0.6), times=1)
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    record = store.get(store.list()[0].id)
    assert record.state == DELIVERED
    assert record.history[0].status is None and "no answer within 0.2s" in record.history[0].error


def test_a_dropped_connection_is_retried(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(drop=True), times=2)
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    record = store.get(store.list()[0].id)
    assert record.state == DELIVERED and len(record.history) == 3
    assert "cannot reach" in record.history[0].error


def test_one_bad_event_in_a_batch_does_not_sink_the_others(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock)
    poisoned = lambda r: any(item.get("event") == "Poison" for item in (r.body or {}).get("batch", []))
    vendor.answer(Answer(400, {"error": "invalid event Poison"}), when=poisoned)
    events = [track(n) for n in range(10)]
    events[6] = track(6, "Poison")
    intake.accept(events)
    drain([worker], store, clock, clock.advance)
    states = finished(store)
    assert states.pop("msg-0006") == DEAD
    assert set(states.values()) == {DELIVERED}
    assert sorted(vendor.delivered_ids()) == sorted(states)  # each good event exactly once
    dead = store.get(next(r.id for r in store.list() if r.state == DEAD))
    assert dead.last_status == 400 and "final" in dead.reason
    assert dead.event["event"] == "Poison"
    assert [item["event"] for item in dead.request["body"]["batch"]] == ["Poison"]


def test_501_and_other_4xx_are_final_at_once(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(501, {"error": "not implemented"}), when=lambda r: r.body.get("event") == "A")
    vendor.answer(Answer(403, {"error": "forbidden"}), when=lambda r: r.body.get("event") == "B")
    intake.accept([track(1, "A"), track(2, "B")])
    drain([worker], store, clock, clock.advance)
    for record in store.list():
        full = store.get(record.id)
        assert full.state == DEAD and len(full.history) == 1


def test_a_vendor_that_keeps_failing_ends_as_a_dead_letter_with_every_attempt(engine, store, vendor, clock):
    policy = RetryPolicy(retry_for=300, backoff=10, max_backoff=60)
    intake, worker = setup(engine, store, vendor, clock, batch=False, policy=policy)
    vendor.answer(Answer(503, {"error": f"down, key {WRITE_KEY}"}))
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    record = store.get(store.list()[0].id)
    assert record.state == DEAD
    assert record.reason == f"gave up after {len(record.history)} attempts over the 5m retry horizon"
    assert len(record.history) >= 4 and {a.status for a in record.history} == {503}
    assert record.history[-1].at - record.history[0].at <= 300
    # what the vendor echoed back is masked like everything else
    assert WRITE_KEY not in json.dumps(record.history[0].error) and "***" in record.history[0].error


def test_the_same_message_id_is_delivered_once_within_the_window(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, dedupe=3600)
    intake.accept([track(1), track(2)])
    receipts = intake.accept([track(1)])
    assert receipts[0].states() == {"segment": SKIPPED}
    duplicate = store.list(state=SKIPPED)[0]
    assert duplicate.reason.startswith("duplicate: messageId 'msg-0001' was already accepted at")
    drain([worker], store, clock, clock.advance)
    assert sorted(vendor.delivered_ids()) == ["msg-0001", "msg-0002"]
    clock.advance(3601)  # the window has passed: the same id is a new event again
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    assert sorted(vendor.delivered_ids()) == ["msg-0001", "msg-0001", "msg-0002"]


def test_the_request_rate_is_kept(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False, rate=4)
    intake.accept([track(n) for n in range(12)])
    drain([worker], store, clock, clock.advance)
    assert len(vendor.received) == 12
    # a burst of 4, then one every quarter second: 8 more take 2 seconds of the fake clock
    assert clock.slept == pytest.approx(2.0)


def test_secrets_never_reach_the_store(engine, store, vendor, clock, tmp_path):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(400, {"error": "bad"}))
    intake.accept([track(1)])
    drain([worker], store, clock, clock.advance)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    assert WRITE_KEY.encode() not in raw
    assert base64.b64encode(f"{WRITE_KEY}:".encode()) not in raw
    assert b"Basic ***" in raw  # the request is kept, its credential masked


def test_dead_letters_can_be_listed_counted_and_retried_from_the_command_line(engine, store, vendor, clock, tmp_path,
                                                                            capsys):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(400, {"error": "bad"}), times=2)
    intake.accept([track(1), track(2), track(3)])
    drain([worker], store, clock, clock.advance)
    url = f"sqlite:///{tmp_path / 'outbox.db'}"

    assert main(["deliveries", "--store", url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["destination", "queued", "retrying", "in_flight", "delivered", "dry_run", "skipped",
                                "rejected", "dead"]
    assert table[1].split() == ["segment", "0", "0", "0", "1", "0", "0", "0", "2"]

    assert main(["deliveries", "list", "--store", url, "--state", "dead"]) == 0
    dead = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["messageId"] for d in dead] == ["msg-0001", "msg-0002"]
    assert main(["deliveries", "show", str(dead[0]["id"]), "--store", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["attempts_log"][0]["status"] == 400 and shown["event"]["messageId"] == "msg-0001"
    assert shown["request"]["headers"]["Authorization"] == "Basic ***"

    assert main(["deliveries", "retry", str(dead[0]["id"]), "--store", url]) == 0
    assert "1 dead deliveries queued again" in capsys.readouterr().err
    drain([worker], store, clock, clock.advance)
    assert finished(store) == {"msg-0001": DELIVERED, "msg-0002": DEAD, "msg-0003": DELIVERED}
    assert main(["deliveries", "retry", "--store", url, "--destination", "segment"]) == 0
    drain([worker], store, clock, clock.advance)
    assert set(finished(store).values()) == {DELIVERED}


def test_an_event_the_mapping_cannot_send_is_rejected_with_the_reason(engine, store, vendor, clock):
    route = engine.route("planhat", {"tenant_token": "t0k3n-secret", "base_url": vendor.url})
    intake = Intake(engine, [route], store, clock=clock)
    worker = DestinationWorker(route, store, HttpClient(timeout=2), owner="w", clock=clock)
    anonymous = {"type": "track", "event": "Viewed", "anonymousId": "anon-1", "messageId": "anon-msg"}
    intake.accept([anonymous, track(1)])
    drain([worker], store, clock, clock.advance)
    rejected = store.list(state="rejected")
    assert [r.message_id for r in rejected] == ["anon-msg"]
    assert "externalId" in rejected[0].errors[0]["message"]
    assert finished(store)["msg-0001"] == DELIVERED


# --------------------------------------------------------------------------- outages: the circuit breaker

def test_a_destination_down_backs_off_as_a_whole_then_sends_its_backlog_in_full_batches(engine, store, vendor, clock):
    """The issue's outage target: 200 events due, the vendor down for 10 s: at most one request a second
    while it is down, and after it recovers at most ceil(200 / the largest batch) + 2 requests."""
    intake, worker = setup(engine, store, vendor, clock)
    start = clock.now
    recovered_at = start + 10
    vendor.answer(Answer(500, {"error": "down"}), when=lambda r: clock.now < recovered_at)
    intake.accept([track(n) for n in range(200)])
    sent_at = []
    real_send = worker.client.send

    def counting(request):
        sent_at.append(clock.now)
        return real_send(request)

    worker.client.send = counting
    drain([worker], store, clock, clock.advance)

    assert set(finished(store).values()) == {DELIVERED}
    assert sorted(vendor.delivered_ids()) == sorted(f"msg-{n:04d}" for n in range(200))
    while_down = [at for at in sent_at if at < recovered_at]
    assert len(while_down) <= 10 + 1   # at most one a second, the first failure included
    for earlier, later in zip(while_down, while_down[1:]):
        assert later - earlier >= 0.5   # never two at once: one probe at a time
    largest = engine.destination("segment").batching.max_events
    after = [at for at in sent_at if at >= recovered_at]
    assert len(after) <= -(-200 // largest) + 2


def test_retry_after_keeps_the_whole_destination_quiet(engine, store, vendor, clock):
    intake, worker = setup(engine, store, vendor, clock, batch=False)
    vendor.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "30"}), times=1)
    intake.accept([track(n) for n in range(5)])
    start = clock.now
    worker.run_once()                       # the first request is refused with Retry-After: 30
    assert len(vendor.refused) == 1
    clock.advance(29)
    assert worker.run_once() == 0           # the other four are due, but the destination waits as a whole
    assert len(vendor.refused) + len(vendor.received) == 1
    drain([worker], store, clock, clock.advance)
    assert set(finished(store).values()) == {DELIVERED}
    assert all(at >= start + 30 for r in store.list() for at in [store.get(r.id).history[-1].at])
