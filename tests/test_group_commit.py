"""Group commit: concurrent writers share a transaction, each gets its own result, and a bad job fails alone."""
from __future__ import annotations

import threading
import time

import pytest

from engine.store import QUEUED, SKIPPED, NewDelivery, NewEvent, open_store
from engine.store.group import GroupCommit

T0 = 1_700_000_000.0


def test_writers_that_arrive_while_one_writes_share_the_next_transaction():
    groups: list[list[int]] = []
    first_may_finish = threading.Event()

    def write(jobs):
        groups.append(list(jobs))
        if len(groups) == 1:
            first_may_finish.wait(10)
        return [job * 10 for job in jobs]

    commit: GroupCommit[int, int] = GroupCommit(write)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda j=j: results.__setitem__(j, commit.run(j))) for j in range(8)]
    threads[0].start()
    while not groups:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)   # the seven others are now waiting behind the first transaction
    first_may_finish.set()
    for thread in threads:
        thread.join(10)

    assert groups[0] == [0] and sorted(groups[1]) == list(range(1, 8)) and len(groups) == 2
    assert results == {j: j * 10 for j in range(8)}   # each writer got its own result


def test_a_job_that_fails_the_shared_transaction_fails_alone():
    gate = threading.Event()

    def write(jobs):
        if len(jobs) == 1 and jobs[0] == "first":
            gate.wait(10)
        if "bad" in jobs:
            raise ValueError("bad job")
        return [job.upper() for job in jobs]

    commit: GroupCommit[str, str] = GroupCommit(write)
    outcome: dict[str, object] = {}

    def run(job):
        try:
            outcome[job] = commit.run(job)
        except ValueError as exc:
            outcome[job] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(0.1)
    others = [threading.Thread(target=run, args=(job,)) for job in ("a", "bad", "b")]
    for thread in others:
        thread.start()
    time.sleep(0.3)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)

    assert outcome["first"] == "FIRST" and outcome["a"] == "A" and outcome["b"] == "B"
    assert isinstance(outcome["bad"], ValueError)


def test_an_interrupted_write_leaves_the_group_commit_usable():
    calls = []

    def write(jobs):
        calls.append(jobs)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return jobs

    commit: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(KeyboardInterrupt):
        commit.run(1)
    later = threading.Thread(target=lambda: calls.append(commit.run(2)))
    later.start()
    later.join(5)
    assert not later.is_alive() and calls[-1] == 2   # not stuck "busy" after the interruption


def test_concurrent_accepts_on_sqlite_are_all_stored_once_and_dedupe_across_them(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'group.db'}")

    def batch(thread: int) -> list[NewEvent]:
        events = [NewEvent({"type": "track", "messageId": f"t{thread}-{i}"}, f"t{thread}-{i}",
                           [NewDelivery("crisp"), NewDelivery("planhat")]) for i in range(20)]
        events.append(NewEvent({"type": "track", "messageId": "shared"}, "shared", [NewDelivery("crisp")]))
        return events

    accepted: dict[int, list] = {}
    threads = [threading.Thread(target=lambda t=t: accepted.__setitem__(t, store.accept(batch(t), T0, 3600)))
               for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    delivery_ids = [d[0] for result in accepted.values() for a in result for d in a.deliveries]
    assert len(delivery_ids) == len(set(delivery_ids)) == 16 * 41
    shared = [a.deliveries[0][2] for result in accepted.values() for a in result[-1:]]
    assert sorted(shared) == [QUEUED] + [SKIPPED] * 15   # exactly one thread's copy of "shared" was queued
    for result in accepted.values():   # every id handed back is the row the store holds
        for a in result[:3]:
            record = store.get(a.deliveries[0][0])
            assert record is not None and record.event_id == a.event_id
    counts = store.counts(T0)
    assert counts["crisp"][QUEUED] == 16 * 20 + 1 and counts["planhat"][QUEUED] == 16 * 20
    store.close()
