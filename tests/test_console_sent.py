"""What was sent is what is shown: the delivery worker keeps, with each attempt, the request that went over the
wire (a batch once, its deliveries counted), secrets masked; a real vendor stand-in on localhost answers.
"""
from __future__ import annotations

import json
import random
import sqlite3

import pytest
from vendor_server import Answer, VendorServer

from engine import Engine
from engine.cli import main
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy, drain
from engine.intake import Intake
from engine.store import DEAD, DELIVERED, NOT_RECORDED, RETRYING, EventQuery, open_store

WRITE_KEY = "wk-secret-sent-5521"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def track(n: int, **extra) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{n}", "messageId": f"msg-{n}",
            "timestamp": "2026-11-23T10:00:00Z", "properties": {"n": n, **extra}}


@pytest.fixture
def vendor():
    with VendorServer() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as opened:
        yield opened


def worker_for(store, vendor, clock, policy=RetryPolicy(retry_for=3600, backoff=1, max_backoff=60)):
    engine = Engine()
    route = engine.route("segment", {"write_key": WRITE_KEY, "base_url": vendor.url})
    intake = Intake(engine, [route], store, clock=clock)
    worker = DestinationWorker(route, store, HttpClient(timeout=2.0), owner="w", policy=policy, clock=clock,
                               rng=random.Random(3))
    return intake, worker


def deliveries(store) -> dict[str, int]:
    return {d.message_id: d.id for e in store.events(EventQuery(limit=1000)) for d in e.deliveries}


def test_each_delivery_of_a_batch_shows_the_batch_request_that_went_over_the_wire(store, vendor, tmp_path):
    clock = FakeClock()
    intake, worker = worker_for(store, vendor, clock)
    intake.accept([track(n) for n in range(5)])
    drain([worker], store, clock, clock.advance)
    [wire] = vendor.received
    for message_id, delivery in deliveries(store).items():
        record = store.get(delivery)
        assert record.state == DELIVERED and record.sent is not None
        sent = record.sent.request
        assert sent["url"] == f"{vendor.url}/v1/batch" and sent["method"] == "POST"
        assert sent["body"] == wire.body   # the body the vendor received, whole
        assert message_id in [item["messageId"] for item in sent["body"]["batch"]]
        assert record.sent.events == 5 and sorted(record.sent.deliveries) == sorted(deliveries(store).values())
        assert sent["headers"]["Authorization"] == "Basic ***"
    with sqlite3.connect(tmp_path / "outbox.db") as raw:   # the write key is nowhere in the store
        dump = "\n".join(raw.iterdump())
    assert WRITE_KEY not in dump and "Basic ***" in dump


def test_a_retrying_delivery_shows_the_request_its_last_attempt_sent_and_the_vendor_answer(store, vendor):
    clock = FakeClock()
    intake, worker = worker_for(store, vendor, clock)
    vendor.answer(Answer(500, {"error": "down for maintenance"}))
    intake.accept([track(1)])
    worker.run_once()
    record = store.get(deliveries(store)["msg-1"])
    assert record.state == RETRYING and record.last_status == 500
    assert "down for maintenance" in record.history[-1].error
    assert record.sent is not None and record.sent.events == 1
    assert record.sent.request["body"]["batch"][0]["messageId"] == "msg-1"
    assert record.history[-1].sent_id == record.sent.id


def test_a_dead_letter_after_a_final_answer_keeps_the_request_it_failed_with(store, vendor):
    clock = FakeClock()
    intake, worker = worker_for(store, vendor, clock)
    vendor.answer(Answer(400, {"error": "bad event"}), when=lambda r: "poison" in str(r.body))
    intake.accept([track(1), track(2, note="poison"), track(3)])
    drain([worker], store, clock, clock.advance)
    found = deliveries(store)
    dead = store.get(found["msg-2"])
    assert dead.state == DEAD and dead.last_status == 400
    # split until the bad event stood alone: the last request sent for it carried it alone
    assert dead.sent.events == 1 and [i["messageId"] for i in dead.sent.request["body"]["batch"]] == ["msg-2"]
    for ok in ("msg-1", "msg-3"):
        record = store.get(found[ok])
        assert record.state == DELIVERED
        assert "msg-2" not in [i["messageId"] for i in record.sent.request["body"]["batch"]]


def test_deliveries_show_prints_the_request_that_went_over_the_wire_or_says_it_was_not_recorded(
        store, vendor, tmp_path, capsys):
    clock = FakeClock()
    intake, worker = worker_for(store, vendor, clock)
    intake.accept([track(n) for n in range(3)])
    drain([worker], store, clock, clock.advance)
    intake.accept([track(3)])   # queued: nothing sent yet

    def show(delivery: int) -> dict:
        assert main(["deliveries", "show", str(delivery), "--store", f"sqlite:///{tmp_path / 'outbox.db'}"]) == 0
        return json.loads(capsys.readouterr().out)

    found = deliveries(store)
    shown = show(found["msg-1"])
    [wire] = vendor.received
    assert shown["sent"]["request"]["url"] == f"{vendor.url}/v1/batch" and shown["sent"]["request"]["body"] == wire.body
    assert shown["sent"]["events"] == 3 and sorted(shown["sent"]["deliveries"]) == sorted(
        found[f"msg-{n}"] for n in range(3))
    assert shown["attempts_log"][-1]["sent_id"] == shown["sent"]["id"]
    assert show(found["msg-3"])["sent"] is None
    with sqlite3.connect(tmp_path / "outbox.db") as raw:   # as a request sent before requests were recorded
        raw.execute("UPDATE attempts SET sent_id = NULL")
    unrecorded = show(found["msg-1"])
    assert unrecorded["sent"] == NOT_RECORDED and unrecorded["state"] == DELIVERED
    assert "sent_id" not in unrecorded["attempts_log"][-1]
    assert WRITE_KEY not in json.dumps(shown)
