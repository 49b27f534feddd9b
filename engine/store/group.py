"""Group commit: writers that arrive together share one transaction, and one fsync.

An acknowledged event must be on disk, so every intake write ends in a commit,
and a commit waits for the disk (about 3 ms here with synchronous=FULL). One
request per commit caps a process at a few hundred requests a second whatever
the CPU. Here the first writer to arrive becomes the *leader*: it takes what
every waiting writer brought, writes it all in one transaction and commits, and
only then wakes them, each with its own result. Writers arriving meanwhile wait
for the next group, so nobody returns before their rows are durable, and a lone
writer pays nothing extra. The same idea as the group commit of MySQL's binary
log and PostgreSQL's ``commit_delay``, done in the process because SQLite has one
writer at a time.

If the shared transaction fails, each job is written again alone, so a fault in
one request fails that request only.

Used by the SQLite store. PostgreSQL already lets concurrent transactions share
one WAL flush, and several of its connections write at once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class _Slot(Generic[Job, Result]):
    __slots__ = ("job", "done", "result", "error")

    def __init__(self, job: Job):
        self.job = job
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Job, Result]):
    """Runs ``write(jobs) -> results`` (one transaction, one result per job) for jobs submitted together."""

    def __init__(self, write: Callable[[list[Job]], list[Result]], max_jobs: int = 64):
        self._write, self._max_jobs = write, max_jobs
        self._changed = threading.Condition()
        self._waiting: list[_Slot] = []
        self._busy = False

    def __repr__(self) -> str:
        return f"<GroupCommit waiting={len(self._waiting)}>"

    def run(self, job: Job) -> Result:
        """Write ``job`` with whatever else is waiting; returns once it is committed (or raises its error)."""
        slot: _Slot = _Slot(job)
        with self._changed:
            self._waiting.append(slot)
            while self._busy and not slot.done:
                self._changed.wait()
            if not slot.done:   # nobody is writing: lead a group, this job first, then those waiting longest
                self._busy = True
                self._waiting.remove(slot)
                take = self._max_jobs - 1
                group, self._waiting = [slot, *self._waiting[:take]], self._waiting[take:]
        if not slot.done:
            try:
                self._lead(group)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self, group: list[_Slot]) -> None:
        try:
            results = self._write([slot.job for slot in group])
            for slot, result in zip(group, results):
                slot.result, slot.done = result, True
        except Exception as exc:  # noqa: BLE001  handed to the writers, raised in their threads
            if len(group) == 1:
                group[0].error = exc
                return
            for slot in group:   # one bad job must not fail the others: each alone
                try:
                    slot.result = self._write([slot.job])[0]
                except Exception as alone:  # noqa: BLE001  handed to its own writer, raised there
                    slot.error = alone
                slot.done = True
        finally:   # interrupted (KeyboardInterrupt, say): nobody may wait for ever on a group that ended
            for slot in group:
                if not slot.done and slot.error is None:
                    slot.error = RuntimeError("the write was interrupted before it was committed")
                slot.done = True
