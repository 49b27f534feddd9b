"""Run delivery workers until stopped: threads per destination, pruning, a clean stop.

A worker is anything with a ``name`` (its queue in the store) and
``run_once(now) -> int`` (how many deliveries it handled), so destination
workers and source workers (webhooks waiting for lookups) run side by side.
Stopping lets every thread finish the request it is sending and record the
verdict; leases not yet used go back to the queue. Every ``report_every``
seconds it logs one line per destination that did something (sent, failed,
retrying, dead); ``health.py`` logs failing/recovered edges and dead letters.

Idle threads wait on their worker's doorbell (``wakeup.py``), rung when a write
anywhere commits work for that queue (``store.listen``): an accepted event starts
its request milliseconds later, and an idle destination still looks at the store
only once per ``idle_wait`` (``delivery.poll``), which is also what a lost wake-up
costs. A batching destination that has just sent a batch short of full waits
``batch_wait`` (``delivery.batch_wait``) before its next turn, so that under load
events gather into full batches, while a lone event after a quiet spell goes at once.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from ..load.delivery_options import DeliveryOptions
from ..route import Route
from ..secrets import Masker
from ..store import PENDING, RETRYING, Store
from .http import HttpClient
from .limits import RateLimiter
from .retry import RetryPolicy
from .wakeup import Doorbells
from .worker import DestinationWorker

log = logging.getLogger("eventmap.deliver")


def new_owner() -> str:
    """Who holds a lease: host and process, so an operator can tell which worker took what."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def pooled_client(concurrency: int, timeout: float) -> HttpClient:
    """One session per destination, its connection pool as large as the threads that share it."""
    return HttpClient(timeout=timeout, pool_size=concurrency)


def destination_workers(routes: list[Route], store: Store, options: DeliveryOptions, *, owner: str,
                        stop: threading.Event, client=None, clock=time.time) -> list[DestinationWorker]:
    """A worker per enabled route, each with its own pooled client and rate limiter."""
    policy = RetryPolicy(options.retry_for, options.backoff, options.max_backoff)
    workers = []
    for route in routes:
        if not route.enabled:
            continue
        limits = route.limits
        limiter = RateLimiter(limits.rate) if limits.rate else None
        sender = client if client is not None else pooled_client(limits.concurrency, options.timeout)
        workers.append(DestinationWorker(route, store, sender, owner=owner, policy=policy,
                                         lease_for=options.lease, clock=clock, limiter=limiter, stop=stop))
    return workers


DEFAULT_OPTIONS = DeliveryOptions()   # frozen: one shared default is safe


class Runner:
    def __init__(self, workers: list, store: Store, *, threads: dict[str, int] | None = None, owner: str,
                 stop: threading.Event, keep_done_for: float | None = None,
                 idle_wait: float = DEFAULT_OPTIONS.poll, batch_wait: float = DEFAULT_OPTIONS.batch_wait,
                 clock=time.time, masker: Masker | None = None, report_every: float | None = None,
                 archive_for: float | None = None):
        """``keep_done_for``: prune finished deliveries this old (None: no pruning); ``archive_for``: and events
        without deliveries this old (the archive replays read; None: as old as ``keep_done_for``)."""
        self.workers, self.store, self.owner, self.stop_event = workers, store, owner, stop
        self.threads = threads or {}
        self.keep_done_for, self.idle_wait, self.batch_wait, self.clock = keep_done_for, idle_wait, batch_wait, clock
        self.report_every, self.archive_for = report_every, archive_for
        self.masker = masker or Masker(frozenset())
        self.bells = Doorbells(worker.name for worker in workers)
        self._short_batch_at: dict[str, float] = {}   # batching worker -> when it last sent a batch short of full
        self._threads: list[threading.Thread] = []
        self._listening = None

    def start(self) -> None:
        try:   # before the first turns: what is committed after them rings
            self._listening = self.store.listen(self.bells.hear)
        except Exception as exc:  # noqa: BLE001  without wake-ups delivery still works, by polling
            log.warning("no wake-ups from the store (%s): idle workers look every %gs",
                        self.masker.text(f"{type(exc).__name__}: {exc}"), self.idle_wait)
        thread = threading.Thread(target=self._close_bells_on_stop, name="doorbells", daemon=True)
        thread.start()
        self._threads.append(thread)
        for worker in self.workers:
            if hasattr(worker, "more_due"):   # a full lease leaves more, perhaps: a sibling thread takes it meanwhile
                worker.more_due = self.bells[worker.name].ring
            for index in range(self.threads.get(worker.name, 1)):
                thread = threading.Thread(target=self._loop, args=(worker,), name=f"{worker.name}-{index}", daemon=True)
                thread.start()
                self._threads.append(thread)
        if self.keep_done_for is not None:
            thread = threading.Thread(target=self._prune_loop, name="prune", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.report_every:
            thread = threading.Thread(target=self._report_loop, name="report", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        if self._listening is not None:
            self._listening.close()
        self.store.release(self.owner)

    def _close_bells_on_stop(self) -> None:
        self.stop_event.wait()
        self.bells.close()

    def _loop(self, worker) -> None:
        bell = self.bells[worker.name]
        failures = 0
        while not self.stop_event.is_set():
            self._gather(worker)
            try:
                handled = worker.run_once(self.clock())
                failures = 0
            except Exception as exc:  # noqa: BLE001  a database hiccup must not end delivery for good
                failures += 1
                log.error("%s: %s (trying again in %ds)", worker.name,
                          self.masker.text(f"{type(exc).__name__}: {exc}"), min(30, 2 ** failures))
                self.stop_event.wait(min(30, 2 ** failures))
                continue
            if handled:
                if getattr(worker, "batching", False) and handled < worker.lease_size():
                    self._short_batch_at[worker.name] = time.monotonic()   # the next batch gathers (_gather)
                continue
            bell.wait(lambda: self._idle_for(worker))

    def _gather(self, worker) -> None:
        """A batching destination that sent a batch short of full less than ``batch_wait`` ago lets events gather
        until then (a lone event after a quiet spell goes at once; under load batches fill)."""
        sent = self._short_batch_at.get(worker.name)
        if sent is not None and self.batch_wait > 0:
            hold = sent + self.batch_wait - time.monotonic()
            if hold > 0:
                self.stop_event.wait(hold)

    def _idle_for(self, worker) -> float:
        """How long an idle worker's time-keeping thread waits for a ring: the poll interval, or less when a
        retry is due sooner (and not before its circuit breaker lets a request out)."""
        try:
            due = resume_at(worker, self.store, self.clock())
        except Exception as exc:  # noqa: BLE001  the store is failing: look again after the poll interval
            log.error("%s: %s", worker.name, self.masker.text(f"{type(exc).__name__}: {exc}"))
            return self.idle_wait
        return self.idle_wait if due is None else min(self.idle_wait, max(0.01, due - self.clock()))

    def _prune_loop(self) -> None:
        while not self.stop_event.wait(60.0):
            try:
                now = self.clock()
                self.store.prune(now - self.keep_done_for,
                                 archive_before=None if self.archive_for is None else now - self.archive_for)
            except Exception as exc:  # noqa: BLE001  pruning tries again next minute
                log.error("pruning failed: %s", self.masker.text(f"{type(exc).__name__}: {exc}"))

    def _report_loop(self) -> None:
        every = self.report_every or 60.0
        reports = {w.name: Report(w.name) for w in self.workers if getattr(w, "stats", None) is not None}
        while not self.stop_event.wait(every):
            try:
                counts = self.store.counts(self.clock())
            except Exception as exc:  # noqa: BLE001  the next interval tries again; delivery goes on regardless
                log.error("cannot read the store for the delivery report: %s",
                          self.masker.text(f"{type(exc).__name__}: {exc}"))
                continue
            for worker in self.workers:
                if worker.name in reports:
                    reports[worker.name].log(worker.stats, counts.get(worker.name, {}), every)


class Report:
    """One destination's line per interval: what changed since the last one, and what still waits."""

    def __init__(self, destination: str):
        self.destination = destination
        self.seen = (0, 0, 0)

    def log(self, stats, counts: dict, every: float) -> None:
        totals = (stats.delivered + stats.dry_run, stats.retried + stats.dead, stats.dead)
        sent, failed, dead = (now - before for now, before in zip(totals, self.seen))
        self.seen = totals
        retrying = counts.get(RETRYING, 0)
        if not (sent or failed or dead or retrying):
            return   # an idle destination says nothing
        log.info("%s: sent %d, failed %d, retrying %d, dead %d in the last %gs", self.destination, sent, failed,
                 retrying, dead, every, extra={"event": "delivery_report", "destination": self.destination,
                                               "sent": sent, "failed": failed, "retrying": retrying, "dead": dead})


def resume_at(worker, store: Store, now: float) -> float | None:
    """When a worker next has something to do: its earliest due delivery, but not before its destination's
    circuit breaker lets a request out (``not_before``); None when nothing is pending."""
    due = store.next_due([worker.name], now)
    not_before = getattr(worker, "not_before", None)
    return due if due is None or not_before is None else max(due, not_before())


def drain(workers: list, store: Store, clock=time.time, advance=None, max_turns: int = 1_000_000) -> None:
    """Work in this thread until nothing is due. With ``advance(seconds)`` (a fake clock), also wait
    out every retry, so a test sees each delivery end delivered or dead."""
    for _ in range(max_turns):
        if sum(worker.run_once(clock()) for worker in workers):
            continue
        due = min((at for at in (resume_at(worker, store, clock()) for worker in workers) if at is not None),
                  default=None)
        if due is None or (due > clock() and advance is None):
            return
        if due > clock():
            advance(due - clock())
    raise RuntimeError(f"drain did not finish within {max_turns} turns")


def progress_line(workers: list, store: Store, now: float) -> str:
    """sent, retried, failed and queue depth per destination, on one line."""
    counts = store.counts(now)
    parts = []
    for worker in workers:
        progress = getattr(worker, "progress", None)   # a worker that is not a queue of deliveries says itself
        if progress is not None:
            parts.append(progress())
            continue
        stats = getattr(worker, "stats", None)
        mine = counts.get(worker.name, {})
        queued = sum(mine.get(state, 0) for state in PENDING)
        if stats is None:
            parts.append(f"{worker.name}: {queued} queued")
            continue
        dry = f", {stats.dry_run} dry-run" if stats.dry_run else ""
        parts.append(f"{worker.name}: {stats.delivered} delivered{dry} ({stats.requests} requests), "
                     f"{stats.retried} retried, {stats.dead} dead, {stats.rejected} rejected, {queued} queued")
    return " | ".join(parts)
