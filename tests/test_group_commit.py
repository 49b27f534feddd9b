"""Group commit: concurrent writers share a transaction, each gets its own result, and a bad job fails alone."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

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


# --------------------------------------------------------------------------- submit: for a caller that must not wait

class Heard:
    """What submitted jobs' callbacks were told, with a way to wait for all of them."""

    def __init__(self, expected: int):
        self.outcomes: dict[object, tuple] = {}
        self.threads: set[str] = set()
        self._all = threading.Event()
        self._expected = expected
        self._lock = threading.Lock()

    def then(self, job):
        def told(result, error):
            with self._lock:
                self.outcomes[job] = (result, error)
                self.threads.add(threading.current_thread().name)
                if len(self.outcomes) == self._expected:
                    self._all.set()
        return told

    def wait(self) -> None:
        assert self._all.wait(10), f"heard {len(self.outcomes)} of {self._expected}"


def test_submitted_jobs_are_written_by_the_group_commits_own_thread_and_each_hears_its_result():
    writers: list[str] = []

    def write(jobs):
        writers.append(threading.current_thread().name)
        return [job * 10 for job in jobs]

    commit: GroupCommit[int, int] = GroupCommit(write)
    heard = Heard(20)
    for job in range(20):
        commit.submit(job, heard.then(job))   # returns at once, from this one thread
    heard.wait()
    assert heard.outcomes == {job: (job * 10, None) for job in range(20)}
    assert set(writers) == heard.threads == {"group-commit"} and len(writers) < 20   # they shared transactions
    commit.close()


def test_submitted_and_waiting_jobs_share_the_next_transaction():
    groups: list[list[str]] = []
    first_may_finish = threading.Event()

    def write(jobs):
        groups.append(list(jobs))
        if len(groups) == 1:
            first_may_finish.wait(10)
        return [job.upper() for job in jobs]

    commit: GroupCommit[str, str] = GroupCommit(write)
    results: dict[str, str] = {}
    first = threading.Thread(target=lambda: results.__setitem__("first", commit.run("first")))
    first.start()
    while not groups:
        time.sleep(0.001)
    heard = Heard(2)
    commit.submit("soon-1", heard.then("soon-1"))
    commit.submit("soon-2", heard.then("soon-2"))
    waiting = threading.Thread(target=lambda: results.__setitem__("waits", commit.run("waits")))
    waiting.start()
    time.sleep(0.3)
    first_may_finish.set()
    heard.wait()
    for thread in (first, waiting):
        thread.join(10)
    assert groups[0] == ["first"] and sorted(groups[1]) == ["soon-1", "soon-2", "waits"] and len(groups) == 2
    assert results == {"first": "FIRST", "waits": "WAITS"}
    assert heard.outcomes == {"soon-1": ("SOON-1", None), "soon-2": ("SOON-2", None)}
    commit.close()


def test_a_submitted_job_that_fails_hears_its_own_error_and_the_others_their_results():
    gate = threading.Event()

    def write(jobs):
        gate.wait(10)
        if "bad" in jobs:
            raise ValueError("bad job")
        return [job.upper() for job in jobs]

    commit: GroupCommit[str, str] = GroupCommit(write)
    heard = Heard(3)
    for job in ("a", "bad", "b"):
        commit.submit(job, heard.then(job))
    gate.set()
    heard.wait()
    assert heard.outcomes["a"] == ("A", None) and heard.outcomes["b"] == ("B", None)
    result, error = heard.outcomes["bad"]
    assert result is None and isinstance(error, ValueError)
    commit.close()


def test_a_callback_that_raises_is_logged_and_the_writer_goes_on(caplog):
    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: jobs)

    def broken(result, error):
        raise RuntimeError("callback fault")

    commit.submit(1, broken)
    heard = Heard(1)
    commit.submit(2, heard.then(2))
    heard.wait()
    assert heard.outcomes == {2: (2, None)}
    assert "a group commit callback failed" in caplog.text and "callback fault" in caplog.text
    commit.close()


def test_close_writes_what_was_submitted_then_stops_the_writer_and_a_later_submit_starts_another():
    def writers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "group-commit"}

    others = writers()   # of group commits elsewhere in this test process
    gate = threading.Event()
    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: (gate.wait(10), jobs)[1])
    heard = Heard(1)
    commit.submit(1, heard.then(1))
    closing = threading.Thread(target=commit.close)
    closing.start()
    time.sleep(0.1)
    gate.set()
    closing.join(10)
    assert not closing.is_alive() and heard.outcomes == {1: (1, None)}
    assert writers() == others
    again = Heard(1)
    commit.submit(2, again.then(2))
    again.wait()
    commit.close()


def test_jobs_that_arrive_while_the_leader_waits_for_its_turn_join_its_group():
    """The turn (SQLite: the writers' lock shared with other processes) is taken before the group: what
    arrives while another process writes is written in the same transaction."""
    turn_free = threading.Event()
    waiting_for_turn = threading.Event()
    groups: list[list[int]] = []

    @contextmanager
    def turn():
        waiting_for_turn.set()
        turn_free.wait(10)
        yield

    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: (groups.append(list(jobs)), jobs)[1], turn=turn)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda j=j: results.__setitem__(j, commit.run(j))) for j in range(4)]
    threads[0].start()
    assert waiting_for_turn.wait(10)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)   # three more writers wait behind the leader, which waits for its turn
    turn_free.set()
    for thread in threads:
        thread.join(10)
    assert groups == [[0, 1, 2, 3]] and results == {j: j for j in range(4)}


def test_a_turn_that_cannot_be_had_fails_the_group_and_the_next_leader_goes_on():
    attempts = []

    @contextmanager
    def turn():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("no lock file")
        yield

    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: jobs, turn=turn)
    with pytest.raises(OSError, match="no lock file"):
        commit.run(1)
    assert commit.run(2) == 2
    heard = Heard(1)
    commit.submit(3, heard.then(3))
    heard.wait()
    assert heard.outcomes == {3: (3, None)}
    commit.close()
