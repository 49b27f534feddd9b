"""A delivery turn writes its verdicts together and never outlives its lease.

Through the public API against a real local HTTP stand-in and a real SQLite
store: the stand-in's handler reads the store while a turn is under way, and a
counting wrapper around the store sees each transaction the worker asks for.
Time that matters runs on a fake clock the stand-in advances per request.
"""
from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import test_delivery as delivery
from test_delivery import WRITE_KEY, finished, track
from test_delivery_processes import eventmap, run, states, wait_until
from vendor_server import Answer, VendorServer

from engine.deliver import DestinationWorker, HttpClient, RetryPolicy, drain
from engine.deliver.worker import MOST_PER_TURN
from engine.intake import Intake
from engine.store import DELIVERED, QUEUED, RETRYING

# the fixtures of tests/test_delivery.py: a vendor stand-in, a fake clock, a SQLite store, the engine
vendor, clock, store, engine = delivery.vendor, delivery.clock, delivery.store, delivery.engine


class Counting:
    """The store, with a count of the writes a worker asks of it (one transaction each)."""

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple[str, int]] = []   # (method, how many deliveries)

    def __getattr__(self, name):
        return getattr(self.store, name)

    def lease(self, destination, limit, owner, now, lease_for):
        leased = self.store.lease(destination, limit, owner, now, lease_for)
        self.calls.append(("lease", len(leased)))
        return leased

    def finish(self, results, owner, now):
        self.calls.append(("finish", len(results)))
        return self.store.finish(results, owner, now)

    def release(self, owner, ids=None):
        self.calls.append(("release", len(ids or [])))
        return self.store.release(owner, ids)

    def writes(self, method: str) -> list[int]:
        return [n for name, n in self.calls if name == method]


def unbatched_worker(engine, store, vendor, clock, *, lease_for=60.0, timeout=10.0, owner="turns"):
    route = engine.route("segment", {"write_key": WRITE_KEY, "base_url": vendor.url})
    route.limits = route.limits.__class__(concurrency=1, rate=None, batch=False)
    intake = Intake(engine, [route], store.store if isinstance(store, Counting) else store, clock=clock)
    worker = DestinationWorker(route, store, HttpClient(timeout=timeout), owner=owner, clock=clock, lease_for=lease_for,
                               policy=RetryPolicy(retry_for=3600, backoff=1, max_backoff=60), rng=random.Random(7))
    return intake, worker


def test_a_turn_writes_every_verdict_in_one_transaction_when_it_ends(engine, store, vendor, clock):
    counting = Counting(store)
    intake, worker = unbatched_worker(engine, counting, vendor, clock)
    delivered_while_sending = []

    def look(received):
        delivered_while_sending.append(store.counts(clock.now).get("segment", {}).get(DELIVERED, 0))
        return Answer(200)

    vendor.answer(look)
    intake.accept([track(n) for n in range(10)])
    assert worker.run_once() == 10
    assert len(vendor.received) == 10
    assert delivered_while_sending == [0] * 10          # nothing written while the turn sent
    assert counting.writes("finish") == [10]            # then all ten at once
    assert set(finished(store).values()) == {DELIVERED}
    assert worker.stats.delivered == 10 and worker.stats.requests == 10


def test_turns_grow_with_the_pace_seen_up_to_the_most_per_turn(engine, store, vendor, clock):
    counting = Counting(store)
    intake, worker = unbatched_worker(engine, counting, vendor, clock)
    intake.accept([track(n) for n in range(10 + MOST_PER_TURN + 5)])
    drain([worker], counting, clock, clock.advance)
    # the first turn knows no pace; a local stand-in answers at once, so the next ones are as large as allowed
    assert counting.writes("lease")[:3] == [10, MOST_PER_TURN, 5]
    assert counting.writes("finish") == [10, MOST_PER_TURN, 5]
    assert counting.writes("release") == []
    assert len(vendor.delivered_ids()) == 10 + MOST_PER_TURN + 5


def test_a_slow_turn_stops_before_its_lease_ends_and_releases_the_rest(engine, store, vendor, clock):
    """Every answer takes the whole timeout: of ten leased for 60s, five are sent and written before the lease
    ends (the next would need 10s plus a second to write, with 10s left); the other five go back at once."""
    counting = Counting(store)
    intake, worker = unbatched_worker(engine, counting, vendor, clock, lease_for=60, timeout=10)
    written_at = []
    real_finish = store.finish

    def finish(results, owner, now):
        written_at.append(clock.now)
        return real_finish(results, owner, now)

    store.finish = finish

    def slow(received):
        clock.advance(10)
        return Answer(200)

    vendor.answer(slow)
    intake.accept([track(n) for n in range(10)])
    lease_ends = clock.now + 60
    assert worker.run_once() == 10
    assert len(vendor.received) == 5
    assert written_at == [clock.now] and clock.now < lease_ends
    states_now = finished(store)
    assert sorted(m for m, s in states_now.items() if s == DELIVERED) == sorted(vendor.delivered_ids())
    assert sorted(m for m, s in states_now.items() if s == QUEUED) == [f"msg-{n:04d}" for n in range(5, 10)]
    assert counting.writes("release") == [5]
    # released, not left to expire: another worker takes them now
    assert len(store.lease("segment", 100, "other", clock.now, 60)) == 5


def test_a_lease_shorter_than_a_timeout_still_sends_one_request_a_turn(engine, store, vendor, clock):
    intake, worker = unbatched_worker(engine, store, vendor, clock, lease_for=5, timeout=10)
    intake.accept([track(n) for n in range(3)])
    assert worker.run_once() == 1
    drain([worker], store, clock, clock.advance)
    assert sorted(vendor.delivered_ids()) == [f"msg-{n:04d}" for n in range(3)]


def test_the_first_failure_of_a_turn_sends_the_rest_back_untouched_and_all_is_written_once(engine, store, vendor,
                                                                                          clock):
    counting = Counting(store)
    intake, worker = unbatched_worker(engine, counting, vendor, clock)
    calls = []

    def third_fails(received):
        calls.append(received)
        return Answer(500, {"error": "down"}) if len(calls) == 4 else Answer(200)

    vendor.answer(third_fails)
    intake.accept([track(n) for n in range(10)])
    assert worker.run_once() == 10
    assert len(vendor.received) == 3 and len(vendor.refused) == 1   # the breaker stopped the turn at once
    assert counting.writes("finish") == [4] and counting.writes("release") == [6]
    states_now = finished(store)
    assert list(states_now.values()).count(DELIVERED) == 3 and list(states_now.values()).count(RETRYING) == 1
    assert worker.run_once() == 0                                    # backing off as a whole
    drain([worker], counting, clock, clock.advance)
    assert set(finished(store).values()) == {DELIVERED}
    assert sorted(vendor.delivered_ids()) == [f"msg-{n:04d}" for n in range(10)]   # each exactly once


def test_sigkill_mid_turn_re_sends_at_most_the_unwritten_turns(tmp_path: Path):
    """With turns of up to a hundred requests, a killed worker's unwritten verdicts are re-sent after its lease
    expires: nothing is lost, and no more than a turn per thread is sent twice."""
    events = 300
    with VendorServer() as slow:
        slow.answer(Answer(200, delay=0.005))
        config = tmp_path / "eventmap.yaml"
        config.write_text(f"""
storage: sqlite:///outbox.db
delivery: {{lease: 3s, timeout: 1s}}
destinations:
  segment:
    settings: {{write_key: process-test-key, base_url: "{slow.url}"}}
    limits: {{batch: false, concurrency: 2}}
""", encoding="utf-8")
        lines = [f'{{"type": "track", "event": "Tick", "userId": "u{n}", "messageId": "m-{n:04d}"}}'
                 for n in range(events)]
        (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert run("enqueue", "events.jsonl", "--config", str(config), cwd=tmp_path).returncode == 0

        first = eventmap("deliver", "--config", str(config), "--progress", "0", cwd=tmp_path)
        wait_until(lambda: len(slow.received) >= 80)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        first.stdout.close()
        first.stderr.close()
        before = states(tmp_path)
        assert 0 < sum(s == DELIVERED for s in before.values()) < events

        time.sleep(3.1)  # the killed worker's leases (3s) expire
        second = run("deliver", "--config", str(config), "--until-idle", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert set(states(tmp_path).values()) == {DELIVERED}
        assert set(slow.delivered_ids()) == {f"m-{n:04d}" for n in range(events)}
        assert len(slow.delivered_ids()) - events <= 2 * MOST_PER_TURN
