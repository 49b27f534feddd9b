"""The store's behaviour, one suite for both backends (``store``/``backend`` fixtures: sqlite, postgres).

Times are a fake clock (plain floats); concurrency is real threads and processes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO
from engine.problems import ConfigError
from engine.store import (DEAD, DELIVERED, DUPLICATE, INTAKE, QUEUED, REJECTED, RETRYING, SKIPPED, Attempt, EventQuery,
                          Finish, NewDelivery, NewEvent)
from engine.store.migrations import migrations

T0 = 1_700_000_000.0
DAY = 86400.0


def event(message_id: str | None = "m1", **extra) -> dict:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id, **extra}


def new(message_id: str | None = "m1", *destinations: str, body: dict | None = None) -> NewEvent:
    return NewEvent(body or event(message_id), message_id, [NewDelivery(d) for d in destinations or ("crisp",)])


def fill(store, n: int, destination: str = "crisp", now: float = T0) -> list[int]:
    """``n`` queued deliveries of ``destination``; their ids in acceptance order."""
    accepted = store.accept([new(f"m{i}", destination) for i in range(n)], now)
    return [a.deliveries[0][0] for a in accepted]


def states(store, destination: str = "crisp") -> dict[str, int]:
    return {k: v for k, v in store.counts(T0).get(destination, {}).items() if k != "in_flight"}


# --------------------------------------------------------------------------- intake and durability

def test_accept_keeps_every_decision_and_survives_reopening(backend):
    store = backend.open()
    body = event("m1", properties={"plan": "pro", "emoji": "café ☕"})
    accepted = store.accept([
        NewEvent(body, "m1", [NewDelivery("crisp"), NewDelivery("planhat", SKIPPED, "not subscribed to track"),
                              NewDelivery("richpanel", REJECTED, "required field missing",
                                          [{"path": "email", "message": "required"}])]),
        NewEvent({"type": "nonsense"}, None, [NewDelivery(INTAKE, REJECTED, "not Segment",
                                                          [{"path": "type", "message": "unknown"}])]),
    ], T0)
    store.close()

    assert [[(d, s) for _, d, s in a.deliveries] for a in accepted] == [
        [("crisp", QUEUED), ("planhat", SKIPPED), ("richpanel", REJECTED)], [(INTAKE, REJECTED)]]
    reopened = backend.open(upgrade=False)
    try:
        crisp, planhat, richpanel = (reopened.get(i) for i, _, _ in accepted[0].deliveries)
        assert crisp.event == body and crisp.state == QUEUED and crisp.next_at == T0 and crisp.message_id == "m1"
        assert planhat.reason == "not subscribed to track" and planhat.next_at is None
        assert richpanel.errors == [{"path": "email", "message": "required"}]
        assert reopened.get(accepted[1].deliveries[0][0]).event == {"type": "nonsense"}
        assert [item.event for item in reopened.lease("crisp", 10, "w1", T0, 60)] == [body]
    finally:
        reopened.close()


def test_accepting_nothing_writes_nothing(store):
    assert store.accept([], T0) == []
    assert store.counts(T0) == {}


def test_a_message_id_seen_within_the_window_is_skipped_as_a_duplicate(store):
    first = store.accept([new("m1", "crisp", "planhat")], T0, dedupe_window=DAY)
    again = store.accept([new("m1", "crisp", "planhat"), new("m2", "crisp")], T0 + 3600, dedupe_window=DAY)

    assert [s for _, _, s in first[0].deliveries] == [QUEUED, QUEUED]
    assert [s for _, _, s in again[0].deliveries] == [SKIPPED, SKIPPED]
    assert [s for _, _, s in again[1].deliveries] == [QUEUED]
    reason = store.get(again[0].deliveries[0][0]).reason
    assert reason.startswith("duplicate: messageId 'm1' was already accepted at 2023-11-14T22:13:20")
    assert reason.endswith("within the 1d dedupe window")


def test_a_message_id_is_new_again_once_the_window_has_passed(store):
    store.accept([new("m1")], T0, dedupe_window=3600)
    later = store.accept([new("m1")], T0 + 3601, dedupe_window=3600)
    soon_after = store.accept([new("m1")], T0 + 3700, dedupe_window=3600)
    assert later[0].deliveries[0][2] == QUEUED
    assert soon_after[0].deliveries[0][2] == SKIPPED  # the window counts from the last time it was queued


def test_dedupe_is_per_message_id_and_needs_a_message_id_and_a_window(store):
    store.accept([new("m1", "crisp")], T0, dedupe_window=DAY)
    other_destination = store.accept([new("m1", "planhat")], T0, dedupe_window=DAY)
    no_id = store.accept([new(None), new(None)], T0, dedupe_window=DAY)
    no_window = store.accept([new("m1", "crisp")], T0, dedupe_window=0)
    assert other_destination[0].deliveries[0][2] == SKIPPED   # one message, whichever destinations it goes to
    assert [a.deliveries[0][2] for a in no_id] == [QUEUED, QUEUED]
    assert no_window[0].deliveries[0][2] == QUEUED


def test_the_same_message_id_twice_in_one_batch_queues_the_first(store):
    accepted = store.accept([new("m1"), new("m2"), new("m1")], T0, dedupe_window=DAY)
    assert [a.deliveries[0][2] for a in accepted] == [QUEUED, QUEUED, SKIPPED]


def test_skipped_or_rejected_deliveries_do_not_claim_the_message_id(store):
    store.accept([NewEvent(event("m1"), "m1", [NewDelivery("crisp", SKIPPED, "not subscribed")])], T0, DAY)
    assert store.accept([new("m1")], T0 + 1, DAY)[0].deliveries[0][2] == QUEUED


def test_threads_accepting_one_message_id_at_once_queue_it_exactly_once(backend):
    stores = [backend.open() for _ in range(2)]  # two "collectors", eight threads between them
    results, errors = [], []
    rounds, threads = 5, 8
    barrier = threading.Barrier(threads)

    def collector(index):
        try:
            for r in range(rounds):
                barrier.wait()
                accepted = stores[index % 2].accept([new(f"race-{r}", "crisp", "planhat")], T0 + r, DAY)
                results.extend((r, d, s) for _, d, s in accepted[0].deliveries)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=collector, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    for s in stores:
        s.close()
    assert not errors
    for r in range(rounds):
        for destination in ("crisp", "planhat"):
            mine = [s for rr, d, s in results if rr == r and d == destination]
            assert sorted(mine) == [QUEUED] + [SKIPPED] * (threads - 1), (r, destination)


ACCEPT_IN_A_PROCESS = """
import json, sys, time
from pathlib import Path
from engine.store import open_store, NewEvent, NewDelivery
url, order, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ids = [f"p{i}" for i in range(40)]
if order == "reverse":
    ids.reverse()
store = open_store(url, upgrade=False)
while not go.exists():
    time.sleep(0.005)
done = store.accept([NewEvent({"messageId": m}, m, [NewDelivery("crisp")]) for m in ids], 1700000000.0, 86400.0)
print(json.dumps([[m, a.deliveries[0][2]] for m, a in zip(ids, done)]))
"""


def test_processes_accepting_overlapping_batches_queue_each_message_id_once(backend, tmp_path):
    """Three collectors, one of them in the opposite order: no deadlock, each messageId queued once."""
    backend.open().close()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", ACCEPT_IN_A_PROCESS, backend.url, order, str(go)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("forward", "reverse", "forward")]
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    verdicts: dict[str, list[str]] = {}
    for out, _ in outputs:
        for message_id, state in json.loads(out):
            verdicts.setdefault(message_id, []).append(state)
    assert len(verdicts) == 40
    assert all(sorted(v) == [QUEUED, SKIPPED, SKIPPED] for v in verdicts.values()), verdicts


# --------------------------------------------------------------------------- leasing

def test_lease_hands_out_due_deliveries_of_one_destination_oldest_first(store):
    ids = fill(store, 5, now=T0)
    later = fill(store, 2, now=T0 + 10)
    fill(store, 3, destination="planhat")

    assert [item.id for item in store.lease("crisp", 3, "w1", T0, 60)] == ids[:3]
    first = [item.id for item in store.lease("crisp", 3, "w2", T0 + 10, 60)]
    rest = [item.id for item in store.lease("crisp", 10, "w3", T0 + 10, 60)]
    assert first == ids[3:5] + later[:1]
    assert rest == later[1:]
    leased = store.lease("planhat", 10, "w4", T0, 60)
    assert [(item.destination, item.attempts, item.first_at) for item in leased] == [("planhat", 0, T0)] * 3


def test_nothing_is_leased_before_it_is_due(store):
    fill(store, 1, now=T0 + 100)
    assert store.lease("crisp", 10, "w1", T0, 60) == []
    assert len(store.lease("crisp", 10, "w1", T0 + 100, 60)) == 1


def test_many_threads_leasing_at_once_never_get_the_same_delivery(backend):
    stores = [backend.open() for _ in range(2)]
    try:
        ids = fill(stores[0], 600)
        taken: list[list[int]] = [[] for _ in range(12)]
        errors = []
        barrier = threading.Barrier(12)

        def worker(index):
            try:
                barrier.wait()
                while batch := stores[index % 2].lease("crisp", 7, f"w{index}", T0, 600):
                    taken[index] += [item.id for item in batch]
                    time.sleep(0.002)  # a worker sends what it leased before it leases again; a lease alone
                    # (0.1 ms with its index) could let one thread empty the queue before the others start
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        everything = [i for mine in taken for i in mine]
        assert not errors
        assert sorted(everything) == sorted(ids)  # each exactly once, none missing
        assert sum(1 for mine in taken if mine) > 1  # they really did share the work
        assert stores[0].counts(T0)["crisp"]["in_flight"] == 600
    finally:
        for s in stores:
            s.close()


def test_hurry_makes_retrying_deliveries_of_one_destination_due_now_and_leaves_the_rest(store):
    """After an outage the circuit breaker makes what waited on its own backoff due at once."""
    waiting = fill(store, 3)
    [other] = fill(store, 1, destination="planhat")
    leased = store.lease("crisp", 10, "w", T0, 30)
    store.finish([Finish(item.id, RETRYING, Attempt(T0, 500, "down"), next_at=T0 + 600) for item in leased], "w", T0)
    store.lease("planhat", 10, "w", T0, 30)
    store.finish([Finish(other, RETRYING, Attempt(T0, 500, "down"), next_at=T0 + 600)], "w", T0)
    [held] = store.lease("crisp", 1, "w2", T0 + 600, 30)   # one is leased by a worker right now: left alone
    assert store.hurry("crisp", T0 + 1) == 2
    assert sorted(item.id for item in store.lease("crisp", 10, "w3", T0 + 1, 30)) == sorted(set(waiting) - {held.id})
    assert store.lease("planhat", 10, "w3", T0 + 1, 30) == []   # another destination's backoff is its own


def test_an_expired_lease_hands_the_work_to_another_worker_and_the_first_verdict_is_ignored(store):
    [delivery] = fill(store, 1)
    assert [item.id for item in store.lease("crisp", 10, "dead-worker", T0, 30)] == [delivery]
    assert store.lease("crisp", 10, "w2", T0 + 29, 30) == []
    assert store.next_due(["crisp"], T0 + 1) == T0 + 30

    [again] = store.lease("crisp", 10, "w2", T0 + 31, 30)
    assert again.id == delivery and again.attempts == 0
    late = Finish(delivery, DEAD, Attempt(T0 + 32, 400, "late"), reason="too late")
    assert store.finish([late], "dead-worker", T0 + 32) == 0
    assert store.finish([Finish(delivery, DELIVERED, Attempt(T0 + 33, 200, None, 0.2))], "w2", T0 + 33) == 1
    record = store.get(delivery)
    assert record.state == DELIVERED and record.reason is None
    assert [(a.status, a.error) for a in record.history] == [(200, None)]


def test_finish_records_retries_and_hands_them_out_again_when_due(store):
    [delivery] = fill(store, 1)
    store.lease("crisp", 1, "w1", T0, 60)
    retry = Finish(delivery, RETRYING, Attempt(T0 + 1, 503, "crisp answered 503: busy", 0.5), next_at=T0 + 10,
                   request={"method": "POST", "url": "https://crisp.test/people", "headers": {"Auth": "***"}})
    assert store.finish([retry], "w1", T0 + 1) == 1

    assert store.lease("crisp", 1, "w1", T0 + 9, 60) == []
    assert store.next_due(["crisp"], T0 + 2) == T0 + 10
    [item] = store.lease("crisp", 1, "w2", T0 + 10, 60)
    assert (item.attempts, item.first_at) == (1, T0)
    store.finish([Finish(delivery, DEAD, Attempt(T0 + 11, 400, "crisp answered 400: bad email", 0.1),
                         reason="400 is final")], "w2", T0 + 11)

    record = store.get(delivery)
    assert (record.state, record.attempts, record.last_status, record.last_error, record.reason) == (
        DEAD, 2, 400, "crisp answered 400: bad email", "400 is final")
    assert record.request == {"method": "POST", "url": "https://crisp.test/people", "headers": {"Auth": "***"}}
    assert record.history == [Attempt(T0 + 1, 503, "crisp answered 503: busy", 0.5),
                              Attempt(T0 + 11, 400, "crisp answered 400: bad email", 0.1)]


def test_a_verdict_without_an_attempt_records_no_attempt(store):
    [delivery] = fill(store, 1)
    store.lease("crisp", 1, "w1", T0, 60)
    store.finish([Finish(delivery, SKIPPED, reason="route no longer takes track")], "w1", T0)
    record = store.get(delivery)
    assert (record.state, record.attempts, record.history, record.reason) == (
        SKIPPED, 0, [], "route no longer takes track")


def test_text_with_nul_characters_is_kept_not_refused(store):
    """A vendor's binary error page, or a messageId with a NUL, must not make a verdict unrecordable."""
    [accepted] = store.accept([new("bad\x00id")], T0, DAY)
    [item] = store.lease("crisp", 1, "w1", T0, 60)
    assert store.finish([Finish(item.id, DEAD, Attempt(T0, 400, "answered 400: \x00\x01PNG", 0.0))], "w1", T0) == 1
    record = store.get(item.id)
    assert record.event["messageId"] == "bad\x00id"  # the event itself is kept exactly
    assert record.last_error.startswith("answered 400: ") and record.last_error.endswith("\x01PNG")
    assert accepted.deliveries[0][2] == QUEUED


def test_release_gives_leases_back_without_touching_their_state(store):
    ids = fill(store, 3)
    store.lease("crisp", 3, "w1", T0, 60)
    assert store.release("w1", [ids[0]]) == 1
    assert store.release("w1", []) == 0
    assert store.release("someone-else") == 0
    assert [item.id for item in store.lease("crisp", 3, "w2", T0 + 1, 60)] == [ids[0]]
    assert store.release("w1") == 2
    assert [item.id for item in store.lease("crisp", 3, "w3", T0 + 2, 60)] == ids[1:]
    assert states(store) == {QUEUED: 3}


def test_next_due_is_the_earliest_pending_delivery_not_leased(store):
    assert store.next_due(["crisp"], T0) is None
    assert store.next_due([], T0) is None
    fill(store, 1, now=T0 + 50)
    fill(store, 1, destination="planhat", now=T0 + 20)
    assert store.next_due(["crisp"], T0) == T0 + 50
    assert store.next_due(["crisp", "planhat"], T0) == T0 + 20
    store.lease("planhat", 1, "w1", T0 + 20, 100)
    assert store.next_due(["planhat"], T0 + 21) == T0 + 120  # when its lease runs out


def test_counts_by_destination_and_state_with_in_flight(store):
    fill(store, 4)
    fill(store, 2, destination="planhat")
    [item, *_] = store.lease("crisp", 3, "w1", T0, 60)
    store.finish([Finish(item.id, DELIVERED, Attempt(T0, 200, None))], "w1", T0)
    assert store.counts(T0) == {"crisp": {QUEUED: 3, DELIVERED: 1, "in_flight": 2}, "planhat": {QUEUED: 2}}
    assert store.counts(T0 + 61)["crisp"].get("in_flight", 0) == 0  # expired leases are not in flight


# --------------------------------------------------------------------------- inspection and repair

def test_list_filters_and_pages_by_id(store):
    ids = fill(store, 5)
    fill(store, 2, destination="planhat")
    store.lease("crisp", 1, "w1", T0, 60)
    store.finish([Finish(ids[0], DEAD, Attempt(T0, 400, "no"), reason="final")], "w1", T0)

    assert [r.id for r in store.list(limit=3)] == ids[:3]
    assert [r.id for r in store.list("crisp", limit=50, after_id=ids[2])] == ids[3:]
    [dead] = store.list(state=DEAD)
    assert (dead.id, dead.reason, dead.last_status, dead.event, dead.history) == (ids[0], "final", 400, None, [])
    assert [r.destination for r in store.list("planhat")] == ["planhat", "planhat"]
    assert store.get(10**9) is None


def test_events_are_listed_newest_first_with_their_deliveries_and_filters(store):
    bodies = [event("m1"), event("m2", userId="u2"), {"type": "page", "name": "Home", "userId": "u1", "messageId": "m3"},
              {"type": "identify", "userId": "u2", "messageId": "m4", "traits": {"event": "Signed Up"}}]
    store.accept([NewEvent(b, b["messageId"], [NewDelivery("crisp"), NewDelivery("planhat", SKIPPED, "not subscribed")])
                  for b in bodies], T0)
    [first, *_] = store.lease("crisp", 1, "w1", T0, 60)
    store.finish([Finish(first.id, DEAD, Attempt(T0, 400, "crisp answered 400: bad"), reason="final")], "w1", T0)

    latest = store.events(EventQuery())
    assert [e.message_id for e in latest] == ["m4", "m3", "m2", "m1"]
    assert latest[3].event == bodies[0] and latest[3].received_at == T0
    assert [(d.destination, d.state, d.reason, d.last_status) for d in latest[3].deliveries] == [
        ("crisp", DEAD, "final", 400), ("planhat", SKIPPED, "not subscribed", None)]

    def ids(**filters):
        return [e.message_id for e in store.events(EventQuery(**filters))]
    assert ids(user_id="u2") == ["m4", "m2"]
    assert ids(type="track") == ["m2", "m1"]
    assert ids(name="Signed Up") == ["m2", "m1"]   # a trait called "event" is not the event's name
    assert ids(name="Home") == ["m3"]
    assert ids(message_id="m3") == ["m3"]
    assert ids(user_id="u2", type="track") == ["m2"]
    assert ids(limit=2) == ["m4", "m3"]
    assert ids(limit=2, before_id=latest[1].id) == ["m2", "m1"]
    assert ids(user_id="nobody") == []


def test_reasons_count_skips_per_destination_with_duplicates_grouped(store):
    store.accept([new(f"m{i}", "crisp") for i in range(3)], T0, dedupe_window=DAY)
    store.accept([new(f"m{i}", "crisp") for i in range(3)], T0 + 1, dedupe_window=DAY)   # three duplicates
    store.accept([NewEvent(event("x"), "x", [NewDelivery("crisp", SKIPPED, "not subscribed"),
                                             NewDelivery("planhat", SKIPPED, "not subscribed")])], T0)
    assert store.reasons() == {"crisp": {DUPLICATE: 3, "not subscribed": 1}, "planhat": {"not subscribed": 1}}
    assert store.reasons(REJECTED) == {}


def test_timeline_counts_attempts_per_bucket(store):
    hour = T0 - T0 % 3600   # buckets start at multiples of their length
    ids = fill(store, 3, now=hour) + fill(store, 1, destination="planhat", now=hour)
    store.lease("crisp", 3, "w1", hour, 60)
    store.lease("planhat", 1, "w1", hour, 60)
    store.finish([Finish(ids[0], DELIVERED, Attempt(hour + 10, 200, None)),
                  Finish(ids[1], RETRYING, Attempt(hour + 20, 503, "busy"), next_at=hour + 30),
                  Finish(ids[2], RETRYING, Attempt(hour + 70, None, "timed out"), next_at=hour + 90),
                  Finish(ids[3], DELIVERED, Attempt(hour + 75, 202, None))], "w1", hour)
    assert store.timeline(hour, 60) == [(hour, 1, 1), (hour + 60, 1, 1)]
    assert store.timeline(hour, 60, destination="crisp") == [(hour, 1, 1), (hour + 60, 0, 1)]
    assert store.timeline(hour + 60, 3600) == [(hour, 1, 1)]
    assert store.timeline(hour + 100, 60) == []


def test_requeue_puts_dead_letters_back_due_now_with_a_fresh_horizon(store):
    ids = fill(store, 3) + fill(store, 1, destination="planhat")
    store.lease("crisp", 3, "w1", T0, 60)
    store.lease("planhat", 1, "w1", T0, 60)
    store.finish([Finish(i, DEAD, Attempt(T0 + 1, 500, "down"), reason="gave up") for i in ids], "w1", T0 + 1)

    assert store.requeue(T0 + 100, ids=[]) == 0
    assert store.requeue(T0 + 100, ids=[ids[0]]) == 1
    assert store.requeue(T0 + 100, destination="planhat") == 1
    assert store.requeue(T0 + 100, state=DELIVERED) == 0
    leased = store.lease("crisp", 10, "w2", T0 + 100, 60)
    assert [(i.id, i.attempts, i.first_at) for i in leased] == [(ids[0], 0, T0 + 100)]
    assert store.get(ids[0]).attempts == 1  # the history stays
    assert store.requeue(T0 + 200) == 2  # the rest of the dead
    assert states(store) == {QUEUED: 3} and states(store, "planhat") == {QUEUED: 1}


def test_prune_deletes_old_finished_deliveries_in_batches_and_keeps_dead_letters(store):
    ids = fill(store, 10, now=T0)
    [dead, retrying, *done] = ids
    [fresh] = fill(store, 1, now=T0 + 5 * DAY)
    store.lease("crisp", 11, "w1", T0 + 5 * DAY, 60)
    store.finish([Finish(dead, DEAD, Attempt(T0, 400, "no"), reason="final"),
                  Finish(retrying, RETRYING, Attempt(T0, 500, "down"), next_at=T0 + 6 * DAY)]
                 + [Finish(i, DELIVERED, Attempt(T0, 200, None)) for i in done], "w1", T0)
    store.finish([Finish(fresh, DELIVERED, Attempt(T0 + 5 * DAY, 200, None))], "w1", T0 + 5 * DAY)

    assert store.prune(T0 + DAY, batch=3) == 8  # three batches of 3, 3 and 2
    assert [r.id for r in store.list(limit=100)] == [dead, retrying, fresh]
    assert store.get(dead).event == event("m0") and len(store.get(dead).history) == 1
    assert store.get(done[0]) is None
    assert store.prune(T0 + DAY, batch=3) == 0


def test_prune_forgets_old_message_ids(store):
    store.accept([new("m1")], T0, dedupe_window=DAY)
    store.prune(T0 + 2 * DAY)
    assert store.accept([new("m1")], T0 + 2 * DAY - 1, dedupe_window=3 * DAY)[0].deliveries[0][2] == QUEUED


# --------------------------------------------------------------------------- schema versions

def test_version_and_upgrade_twice(store):
    latest = migrations("sqlite" if type(store).__name__ == "SQLiteStore" else "postgres")[-1][0]
    assert store.version() == latest
    assert store.upgrade() == []
    assert store.upgrade() == []
    assert store.version() == latest


def test_upgrading_fills_the_console_columns_of_events_already_kept(backend):
    """Events accepted before the console's migration (3) are found by the console's filters after the upgrade; a body
    PostgreSQL cannot read as text (it holds \\u0000) does not stop the upgrade."""
    [(_, first)] = [m for m in migrations(backend.name) if m[0] == 1]
    for statement in (s.strip() for s in first.split(";")):
        if statement:
            backend.execute(statement)
    backend.execute("INSERT INTO schema_version(version) VALUES (1)")
    backend.execute("""INSERT INTO events(message_id, received_at, body) VALUES ('old-1', 1.0,
                       '{"type": "track", "event": "Signed Up", "userId": "u9", "messageId": "old-1"}')""")
    backend.execute("""INSERT INTO events(message_id, received_at, body) VALUES ('old-2', 2.0,
                       '{"type": "page", "name": "Home\\u0000", "userId": "u9", "messageId": "old-2"}')""")
    with backend.open(upgrade=True) as upgraded:
        assert upgraded.version() == migrations(backend.name)[-1][0]
        found = [e.message_id for e in upgraded.events(EventQuery(user_id="u9", type="track", name="Signed Up"))]
        assert found == ["old-1"]
        assert [e.message_id for e in upgraded.events(EventQuery())] == ["old-2", "old-1"]


def test_several_upgrades_at_once_on_a_new_database(backend):
    results, errors = [], []

    def upgrade():
        try:
            with backend.open(upgrade=True) as opened:
                results.append(opened.version())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(set(results)) == 1 and results[0] >= 1


def test_an_older_database_says_to_run_db_upgrade(backend):
    with pytest.raises(ConfigError) as raised:
        backend.open(upgrade=False)
    assert "schema version 0" in str(raised.value) and "run 'eventmap db upgrade'" in str(raised.value)
    with backend.open(upgrade=True) as opened:
        assert opened.version() >= 1
    backend.open(upgrade=False).close()


def test_a_newer_database_says_to_upgrade_eventmap(backend):
    backend.open().close()
    backend.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(ConfigError) as raised:
        backend.open(upgrade=False)
    assert "schema version 999" in str(raised.value) and "upgrade eventmap" in str(raised.value)


def test_an_option_of_the_other_backend_is_a_clear_error(backend):
    backend.open().close()
    wrong = {"sqlite": {"pool_size": 4}, "postgres": {"synchronous": "FULL"}}[backend.name]
    with pytest.raises(ConfigError) as raised:
        backend.open(**wrong)
    assert f"storage.{next(iter(wrong))}: not an option of" in str(raised.value)


# --------------------------------------------------------------------------- multi-step progress

def test_a_completed_step_keeps_its_answer_and_attempt_for_the_next_lease(store):
    [delivery_id] = fill(store, 1)
    [leased] = store.lease("crisp", 10, "w1", T0, 60)
    assert leased.progress is None
    progress = {"update": {"status": 404, "body": {"reason": "people_not_found"}},
                "create": {"status": 201, "body": {"data": {"people_id": "p-1"}}}}
    assert store.step_done(delivery_id, "w1", progress, Attempt(T0 + 1, 201, None, 0.2, "create"), T0 + 1, T0 + 120)
    assert store.lease("crisp", 10, "w2", T0 + 90, 60) == []  # the completed step renewed the lease
    # another owner (a lost lease) records nothing
    assert not store.step_done(delivery_id, "w2", {}, Attempt(T0 + 1, 200, None, 0.1, "data"), T0 + 1)
    store.finish([Finish(delivery_id, RETRYING, Attempt(T0 + 2, 500, "Crisp answered 500", 0.1, "data"),
                         next_at=T0 + 10)], "w1", T0 + 2)

    [again] = store.lease("crisp", 10, "w3", T0 + 10, 60)
    assert again.progress == progress
    record = store.get(delivery_id)
    assert [(a.step, a.status) for a in record.history] == [("create", 201), ("data", 500)]
    assert record.progress == progress and record.attempts == 2
