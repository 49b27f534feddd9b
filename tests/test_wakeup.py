"""Wake-ups: a write that leaves work wakes the workers at once, on SQLite and PostgreSQL; a lost one costs a poll.

Every test runs on both stores (``backend``), with real parts: the store's own
listener (FIFOs beside a SQLite file, LISTEN/NOTIFY on PostgreSQL), a writer
that is another store object or another process (``eventmap enqueue``,
``eventmap deliveries retry``), the delivery runner, and a vendor on localhost.
The runners here poll every few seconds, so an event that arrives well under
that cannot have been found by polling.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine import Engine
from engine.deliver import Runner, destination_workers
from engine.intake import Intake
from engine.load.delivery_options import DeliveryOptions
from engine.store import DEAD, INBOX, SKIPPED, Finish, NewDelivery, NewEvent, Received
from engine.store.fifo import wake_folder

from conftest import Backend
from vendor_server import Answer, VendorServer

ROOT = Path(__file__).resolve().parents[1]
QUICK = 0.5   # seconds: "at once" for a machine shared with other tests; every poll here is far longer


class Heard:
    """What a listener heard, in order; None is "any queue"."""

    def __init__(self):
        self.names: list[frozenset[str] | None] = []
        self.changed = threading.Condition()

    def __call__(self, names):
        with self.changed:
            self.names.append(names)
            self.changed.notify_all()

    def wait_for(self, condition, timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: condition(self.names), timeout)

    def clear(self) -> None:
        with self.changed:
            self.names.clear()


@contextmanager
def listening(backend, store):
    """``store.listen``, once it hears: a PostgreSQL listener's first words, once LISTEN holds, are "any queue"."""
    heard = Heard()
    listener = store.listen(heard)
    try:
        if backend.name == "postgres":
            assert heard.wait_for(lambda names: None in names), "the PostgreSQL listener never started"
            heard.clear()
        yield heard
    finally:
        listener.close()


def event(message_id: str, *deliveries: NewDelivery) -> NewEvent:
    return NewEvent({"type": "track", "event": "Tick", "messageId": message_id}, message_id, list(deliveries))


def track(n: int) -> dict:
    return {"type": "track", "event": "Tick", "userId": f"u{n}", "messageId": f"wake-{n:04d}-{time.monotonic_ns()}",
            "properties": {"n": n}}


@pytest.fixture
def vendor():
    with VendorServer() as server:
        yield server


@pytest.fixture(scope="module")
def engine():
    return Engine()


def arrival(vendor: VendorServer, message_id: str, timeout: float) -> float | None:
    """When (time.monotonic) the vendor first had ``message_id``, waiting up to ``timeout``; None if it never did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if message_id in vendor.delivered_ids():
            return time.monotonic()
        time.sleep(0.002)
    return None


@contextmanager
def running(engine, store, vendor, *, poll: float, batch: bool = False, batch_wait: float = 0.0, concurrency: int = 2,
            backoff: float = 60.0):
    """A delivery runner for the Segment destination at ``vendor``, as eventmap deliver runs one."""
    route = engine.route("segment", {"write_key": "wake-test-key", "base_url": vendor.url})
    route.limits = route.limits.__class__(concurrency=concurrency, batch=batch)
    stop = threading.Event()
    options = DeliveryOptions(timeout=5.0, backoff=backoff, max_backoff=backoff)
    workers = destination_workers([route], store, options, owner="wake-test", stop=stop)
    runner = Runner(workers, store, threads={"segment": concurrency}, owner="wake-test", stop=stop,
                    idle_wait=poll, batch_wait=batch_wait)
    runner.start()
    try:
        yield route
    finally:
        stop.set()
        runner.join(10)


# --------------------------------------------------------------------------- configuration

def test_the_poll_and_batch_wait_come_from_the_configuration_and_a_zero_poll_is_refused(tmp_path):
    from engine.load.config import load_config
    path = tmp_path / "eventmap.yaml"
    path.write_text("destinations: {segment: {}}\ndelivery: {poll: 5s, batch_wait: 50ms}\n", encoding="utf-8")
    config, problems = load_config(path)
    assert problems == [] and (config.delivery.poll, config.delivery.batch_wait) == (5.0, 0.05)
    assert DeliveryOptions().poll == 1.0 and DeliveryOptions().batch_wait == 0.2   # the documented defaults

    path.write_text("destinations: {segment: {}}\ndelivery:\n  poll: 0s\n", encoding="utf-8")
    _, problems = load_config(path)
    assert [(p.path, p.line) for p in problems] == [("delivery.poll", 3)]
    assert "longer than 0" in problems[0].message


# --------------------------------------------------------------------------- the store's wake-ups

def test_a_write_wakes_every_listening_process_with_the_queues_it_filled(backend, store):
    other, writer = backend.open(), backend.open()
    try:
        with listening(backend, store) as first, listening(backend, other) as second:
            writer.accept([event("m-1", NewDelivery("planhat"), NewDelivery("crisp", SKIPPED, "not subscribed"))],
                          time.time())
            for heard in (first, second):
                assert heard.wait_for(lambda names: names == [frozenset({"planhat"})]), heard.names
                heard.clear()

            writer.receive([Received("track", b'{"event": "Tick"}', time.time())])
            assert first.wait_for(lambda names: names == [frozenset({INBOX})]), first.names
            assert second.wait_for(lambda names: names == [frozenset({INBOX})]), second.names
            first.clear()

            # an event that queues nothing wakes nobody; the next one wakes its own destination only
            writer.accept([event("m-2", NewDelivery("planhat", SKIPPED, "not subscribed"))], time.time())
            writer.accept([event("m-3", NewDelivery("segment"))], time.time())
            assert first.wait_for(lambda names: bool(names))
            time.sleep(0.2)
            assert first.names == [frozenset({"segment"})]
    finally:
        other.close()
        writer.close()


def test_the_inbox_processor_s_write_wakes_the_destinations_of_the_events_it_made(backend, store):
    writer = backend.open()
    try:
        writer.receive([Received("track", b'{"event": "Tick"}', time.time())])
        taken = writer.take_received(10, "processor", time.time(), 60)
        with listening(backend, store) as heard:
            writer.accept_received([r.id for r in taken], "processor", [event("m-4", NewDelivery("planhat"))],
                                   time.time())
            assert heard.wait_for(lambda names: names == [frozenset({"planhat"})]), heard.names
    finally:
        writer.close()


def test_a_dead_letter_queued_again_wakes_its_destination(backend, store):
    writer = backend.open()
    try:
        writer.accept([event("m-5", NewDelivery("planhat"))], time.time())
        leased = writer.lease("planhat", 10, "worker", time.time(), 60)
        writer.finish([Finish(leased[0].id, DEAD, reason="400 is final")], "worker", time.time())
        with listening(backend, store) as heard:
            assert writer.requeue(time.time(), destination="planhat") == 1
            assert heard.wait_for(lambda names: names == [frozenset({"planhat"})]), heard.names
            heard.clear()
            again = writer.lease("planhat", 10, "worker", time.time(), 60)
            writer.finish([Finish(again[0].id, DEAD, reason="400 is final")], "worker", time.time())
            assert writer.requeue(time.time(), ids=[again[0].id]) == 1
            assert heard.wait_for(lambda names: names == [None]), heard.names   # by id: whichever destination
    finally:
        writer.close()


# --------------------------------------------------------------------------- delivery

def test_an_idle_runner_sends_what_another_process_accepts_within_milliseconds(backend, store, engine, vendor):
    writer = backend.open()
    try:
        with running(engine, store, vendor, poll=5.0) as route:
            intake = Intake(engine, [route], writer)
            time.sleep(0.5)   # every thread has looked once and found nothing: idle until the poll at 5 s
            took = []
            for n in range(5):
                body = track(n)
                intake.accept([body])
                began = time.monotonic()
                arrived = arrival(vendor, body["messageId"], 6.0)
                assert arrived is not None, f"event {n} never arrived"
                took.append(arrived - began)
                time.sleep(0.1)
            assert max(took) < QUICK, took
    finally:
        writer.close()


def test_a_backlog_is_shared_by_the_destination_s_threads_at_once(backend, store, engine, vendor):
    """One wake-up wakes one thread; a thread whose turn was full wakes the next, so 30 events that take 0.2 s
    each to send go out three at a time (about 2 s), not one thread's 6 s."""
    vendor.answer(Answer(200, delay=0.2))
    writer = backend.open()
    try:
        with running(engine, store, vendor, poll=30.0, concurrency=3) as route:
            time.sleep(0.5)
            bodies = [track(n) for n in range(30)]
            Intake(engine, [route], writer).accept(bodies)
            began = time.monotonic()
            for body in bodies:
                assert arrival(vendor, body["messageId"], 10.0) is not None
            assert time.monotonic() - began < 4.0
    finally:
        writer.close()


def test_a_lost_wake_up_costs_at_most_the_poll_interval(backend, store, engine, vendor):
    """A write that wakes nobody (here a hand-made SQL update: what an older eventmap or an operator's SQL
    does) is found by the time-keeping thread's poll, however many threads the destination has."""
    poll = 1.5
    vendor.answer(Answer(400, {"error": "no"}), times=1)
    writer = backend.open()
    try:
        with running(engine, store, vendor, poll=poll, concurrency=3) as route:
            body = track(1)
            Intake(engine, [route], writer).accept([body])
            deadline = time.monotonic() + 5
            while not (writer.list(state=DEAD) or time.monotonic() > deadline):
                time.sleep(0.02)
            assert writer.list(state=DEAD), "the first answer (400) should make a dead letter"
            time.sleep(poll)   # settled: every thread idle again
            backend.execute("UPDATE deliveries SET state = 'queued', next_at = 0, lease_owner = NULL,"
                            " lease_until = NULL")
            began = time.monotonic()
            arrived = arrival(vendor, body["messageId"], 3 * poll)
            assert arrived is not None, "never delivered: nobody polls"
            assert arrived - began < poll + QUICK
    finally:
        writer.close()


def test_batches_fill_under_load_while_a_lone_event_goes_at_once(backend, store, engine, vendor):
    writer = backend.open()
    try:
        with running(engine, store, vendor, poll=5.0, batch=True, batch_wait=0.3) as route:
            intake = Intake(engine, [route], writer)
            time.sleep(0.5)
            lone = track(0)
            intake.accept([lone])
            began = time.monotonic()
            arrived = arrival(vendor, lone["messageId"], 6.0)
            assert arrived is not None and arrived - began < QUICK
            time.sleep(0.5)   # longer than batch_wait: the next event is alone again

            requests_before = len(vendor.received)
            bodies = [track(n) for n in range(1, 41)]
            for body in bodies:   # 40 events, one every 10 ms
                intake.accept([body])
                time.sleep(0.01)
            last = time.monotonic()
            for body in bodies:
                assert arrival(vendor, body["messageId"], 6.0) is not None
            took = time.monotonic() - last
            requests = len(vendor.received) - requests_before
            assert requests <= 8, f"{requests} requests for 40 events: batches did not fill"
            assert took < 0.3 + QUICK, "an event waited longer than batch_wait to gather"
    finally:
        writer.close()


# --------------------------------------------------------------------------- other processes: the CLI

def eventmap(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_eventmap_enqueue_and_deliveries_retry_wake_a_running_deliverer(backend, store, engine, vendor, tmp_path):
    config = tmp_path / "eventmap.yaml"
    config.write_text(f"storage: '{backend.url}'\ndestinations:\n  segment:\n"
                      f"    settings: {{write_key: wake-test-key, base_url: '{vendor.url}'}}\n", encoding="utf-8")
    body = track(7)
    (tmp_path / "events.jsonl").write_text(json.dumps(body) + "\n", encoding="utf-8")
    vendor.answer(Answer(400, {"error": "no"}), times=1)
    with running(engine, store, vendor, poll=30.0):
        started = time.monotonic()
        done = eventmap("enqueue", "events.jsonl", "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        exited = time.monotonic()
        deadline = time.monotonic() + 5
        while not (store.list(state=DEAD) or time.monotonic() > deadline):
            time.sleep(0.01)
        dead = store.list(state=DEAD)
        assert dead, f"not tried within {time.monotonic() - exited:.2f}s of enqueue's exit"
        assert time.monotonic() - exited < QUICK
        assert time.monotonic() - started < 30, "found by the poll, not woken"

        done = eventmap("deliveries", "retry", str(dead[0].id), "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        exited = time.monotonic()
        arrived = arrival(vendor, body["messageId"], 5.0)
        assert arrived is not None and arrived - exited < QUICK


# --------------------------------------------------------------------------- each backend's own failure

def test_postgres_listener_reconnects_then_wakes_every_queue(postgres_url, engine, vendor, caplog):
    import psycopg
    backend = Backend("postgres", postgres_url)
    store, writer = backend.open(), backend.open()
    try:
        with running(engine, store, vendor, poll=60.0) as route:
            with psycopg.connect(backend.url, autocommit=True) as admin:
                deadline = time.monotonic() + 5
                while not (listeners := admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND datname = current_database()"
                        ).fetchall()):
                    assert time.monotonic() < deadline, "no LISTEN connection"
                    time.sleep(0.05)
                admin.execute("SELECT pg_terminate_backend(%s)", (listeners[0][0],))
            body = track(9)
            Intake(engine, [route], writer).accept([body])   # nobody listens now: this wake-up is lost
            arrived = arrival(vendor, body["messageId"], 10.0)
            assert arrived is not None, "not delivered: the listener did not come back or did not catch up"
    finally:
        writer.close()
        store.close()
    assert any("lost the wake-up connection" in r.getMessage() for r in caplog.records)
    assert any("listening for wake-ups" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)


def test_sqlite_removes_the_pipe_of_a_listener_that_died(tmp_path):
    backend = Backend("sqlite", f"sqlite:///{tmp_path}/outbox.db")
    store = backend.open()
    folder = wake_folder(store.path)
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from engine.store import open_store; "
            "s = open_store(sys.argv[1]); s.listen(lambda names: None); print('ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, backend.url, str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pipes = [p for p in os.listdir(folder) if p.startswith(f"{child.pid}-")]
        assert len(pipes) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert os.path.exists(folder / pipes[0])   # a killed process removes nothing
    store.accept([event("m-6", NewDelivery("planhat"))], time.time())
    store.close()   # sends what is waiting
    assert not os.path.exists(folder / pipes[0])


def test_a_replay_step_wakes_the_destinations_it_queued_for(backend, store):
    """A replay writes its deliveries itself (store.replay_step), not through accept: it must wake as accept does."""
    from engine.store import Replay, ReplayStep
    writer = backend.open()
    try:
        [accepted] = writer.accept([event("m-6", NewDelivery("planhat", SKIPPED, "not then"))], time.time())
        now = time.time()
        replay = writer.start_replay(Replay(0, "", now - 60, now + 60, None, ["planhat", "crisp"], None,
                                            accepted.event_id, accepted.event_id, accepted.event_id - 1,
                                            owner="p1"), now)
        step = ReplayStep(accepted.event_id, 1, 1, {}, [(accepted.event_id, "m-6", NewDelivery("planhat")),
                                                       (accepted.event_id, "m-6", NewDelivery("crisp", SKIPPED, "no"))])
        with listening(backend, store) as heard:
            assert writer.replay_step(replay.id, "p1", replay.after_id, step, time.time())
            assert heard.wait_for(lambda names: names == [frozenset({"planhat"})]), heard.names
    finally:
        writer.close()
