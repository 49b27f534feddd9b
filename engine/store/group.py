"""Group commit: writers that arrive together share one transaction, and one fsync.

An acknowledged event must be on disk, so every intake write ends in a commit,
and a commit waits for the disk (0.2 to 3 ms on the machines measured, with
synchronous=FULL). One request per commit caps a process at a few hundred
requests a second whatever the CPU. Here the first writer to arrive becomes the
*leader*: it takes what every waiting writer brought, writes it all in one
transaction and commits, and only then wakes them, each with its own result. It
takes the group only once it holds the write lock (``turn``), so writers that
arrive while another process writes join it. Writers arriving later wait for the
next group, so nobody returns before their rows are durable, and a lone writer
pays nothing extra. The same idea as the group commit of MySQL's binary
log and PostgreSQL's ``commit_delay``, done in the process because SQLite has one
writer at a time.

If the shared transaction fails, each job is written again alone, so a fault in
one request fails that request only.

A caller that must not block (the server's event loop) submits its job with a
callback instead; a writer thread of the group commit's own then leads, and the
callback hears when the job is durable.

Used by the SQLite store for all intake writes, and by both stores for the
inbox (``Store.receive``). PostgreSQL's accept does without: it already lets
concurrent transactions share one WAL flush, and several connections write at once.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

log = logging.getLogger("eventmap.store")
Job = TypeVar("Job")
Result = TypeVar("Result")


class _Slot(Generic[Job, Result]):
    __slots__ = ("job", "then", "done", "result", "error")

    def __init__(self, job: Job, then: Callable[[Result | None, BaseException | None], None] | None = None):
        self.job, self.then = job, then
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Job, Result]):
    """Runs ``write(jobs) -> results`` (one transaction, one result per job) for jobs submitted together.

    ``run`` waits for its job (the caller may lead a group); ``submit`` returns at once and a writer
    thread of this object's own leads, so a caller on an event loop never waits for the disk.
    """

    def __init__(self, write: Callable[[list[Job]], list[Result]], max_jobs: int = 64,
                 turn: Callable[[], AbstractContextManager] = nullcontext):
        """``turn``: what a leader holds while it writes (SQLite: the writers' lock shared with other
        processes). The group is taken only once it is held, so jobs that arrive while another process
        writes join it."""
        self._write, self._max_jobs, self._turn = write, max_jobs, turn
        self._changed = threading.Condition()
        self._waiting: list[_Slot] = []
        self._busy = False
        self._writer: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<GroupCommit waiting={len(self._waiting)}>"

    def run(self, job: Job) -> Result:
        """Write ``job`` with whatever else is waiting; returns once it is committed (or raises its error)."""
        slot: _Slot = _Slot(job)
        with self._changed:
            self._waiting.append(slot)
            while self._busy and not slot.done:
                self._changed.wait()
            lead = not slot.done   # nobody is writing: lead a group, this job first, then those waiting longest
            self._busy = self._busy or lead
        if lead:
            try:
                self._lead_released(slot)
            finally:   # interrupted before its group was taken: the job must not be written later by another
                with self._changed:
                    if slot in self._waiting:
                        self._waiting.remove(slot)
                if not slot.done:
                    slot.error, slot.done = RuntimeError("the write was interrupted before it was committed"), True
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def submit(self, job: Job, then: Callable[[Result | None, BaseException | None], None]) -> None:
        """Queue ``job`` and return at once; ``then(result, error)`` is called, from the thread that wrote
        it, once it is committed (error None) or has failed. ``then`` must be quick: the group waits for it."""
        with self._changed:
            self._waiting.append(_Slot(job, then))
            if self._writer is None or not self._writer.is_alive():   # first use in this process (or after a fork)
                self._writer = threading.Thread(target=self._write_submitted, name="group-commit", daemon=True)
                self._writer.start()
            self._changed.notify_all()

    def close(self) -> None:
        """Stop the writer thread once what was submitted is written (a later ``submit`` starts another)."""
        with self._changed:
            writer, self._stopping = self._writer, True
            self._changed.notify_all()
        if writer is not None and writer is not threading.current_thread():
            writer.join(30)
        with self._changed:
            self._stopping = False
            if self._writer is writer:
                self._writer = None

    def _write_submitted(self) -> None:
        """The writer thread: leads a group whenever a submitted job waits and nobody else is writing."""
        while True:
            with self._changed:
                while self._busy or not any(slot.then is not None for slot in self._waiting):
                    if self._stopping and not self._busy:
                        return
                    self._changed.wait()
                self._busy = True
            self._lead_released(None)

    def _take(self, first: _Slot | None) -> list[_Slot]:
        """``first`` (the leader's own job) and those waiting longest, up to ``max_jobs``."""
        with self._changed:
            if first is not None:
                self._waiting.remove(first)
            lead = [] if first is None else [first]
            take = self._max_jobs - len(lead)
            group, self._waiting = [*lead, *self._waiting[:take]], self._waiting[take:]
        return group

    def _lead_released(self, first: _Slot | None) -> None:
        """Lead one group (the caller marked the group commit busy), then let the next leader go."""
        group: list[_Slot] = []
        try:
            with self._turn():
                group = self._take(first)
                self._lead(group)
        except Exception as exc:  # noqa: BLE001  the turn could not be had: the group fails as its write would
            group = group or self._take(first)
            for slot in group:
                if not slot.done:
                    slot.error, slot.done = exc, True
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
            for slot in group:
                if slot.then is not None:
                    _tell(slot)

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


def _tell(slot: _Slot) -> None:
    """A submitted job's outcome to its ``then``; a fault there is logged, never lost in the writer thread."""
    try:
        slot.then(slot.result, slot.error)  # type: ignore[misc]
    except Exception:   # the writer thread must go on for the other jobs
        log.exception("a group commit callback failed")
