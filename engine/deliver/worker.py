"""One destination's delivery loop: lease due deliveries, render, batch, send, record.

A turn's verdicts are written together, in one transaction at its end (one
fsync for up to a hundred requests, not one each); the circuit breaker still
hears each answer as it comes. A turn leases what it can send at the pace it
has seen, and stops sending (releasing the rest) once its lease has too little
left for one more request's timeout and that write, so no lease runs out
mid-turn: a killed worker re-sends the requests of its current turn.

Each verdict is recorded per event, even when events travelled together: a
batch the vendor refuses outright (a final 4xx) is split in halves and sent
again until the bad events are alone, so one bad event cannot sink the
others. Answers are classified as Segment does: 2xx delivered; 408, 423, 429
and 5xx but 501 retried (honouring Retry-After) until the retry horizon;
other 4xx final (a dead letter); a 3xx the client did not follow final too
(redirects.py); no answer at all retried.

One event never holds up the others: each is rendered, and its steps run,
inside one boundary (``_render``, ``_deliver_steps``), where whatever it raises
becomes its own verdict with the reason. A request that cannot be sent as
built (``RequestError``: a header value HTTP cannot carry, a URL that does not
parse) is that request's verdict, decided on its own and logged as a problem
with the request: a batch is split until the event at fault stands alone, and
the circuit breaker never hears it, since the vendor did not fail.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from .. import steps as stepping
from ..answers import AnswerTooLarge, RequestError, TransportError, is_retryable, retry_after, summarize, whole
from ..durations import describe_seconds
from ..failures import event_failed
from ..map.language import MappingError
from ..outcome import REJECTED as OUTCOME_REJECTED
from ..outcome import SEND
from ..render.request import Request
from ..route import Route
from ..secrets import Masker
from ..store import DEAD, DELIVERED, DRY_RUN, REJECTED, RETRYING, SKIPPED, Attempt, Finish, Leased, SentRequest, Store
from .health import Health
from .limits import RateLimiter
from .retry import RetryPolicy

log = logging.getLogger("eventmap.deliver")

MOST_PER_TURN = 100   # unbatched: a turn's two commits (lease, verdicts) are shared by up to this many requests
TURN_SECONDS = 2.0    # ... and by no more than it sends in this long, so a destination's other threads find work
FIRST_TURN = 10       # before any request has been timed
WRITE_MARGIN = 1.0    # seconds of a lease kept, after the last request's timeout, for writing the turn's verdicts


@dataclass
class Stats:
    """Running totals for the progress line; shared by a destination's threads."""

    requests: int = 0
    delivered: int = 0
    dry_run: int = 0
    retried: int = 0
    dead: int = 0
    rejected: int = 0
    skipped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, finishes: list[Finish], requests: int) -> None:
        with self._lock:
            self.requests += requests
            for f in finishes:
                if f.state == DELIVERED:
                    self.delivered += 1
                elif f.state == DRY_RUN:
                    self.dry_run += 1
                elif f.state == RETRYING:
                    self.retried += 1
                elif f.state == DEAD:
                    self.dead += 1
                elif f.state == REJECTED:
                    self.rejected += 1
                elif f.state == SKIPPED:
                    self.skipped += 1


class Pace:
    """How long a request to this destination takes (a moving mean), to size leases; shared by its threads."""

    def __init__(self) -> None:
        self._mean: float | None = None
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._mean = seconds if self._mean is None else self._mean + 0.2 * (seconds - self._mean)

    def mean(self) -> float | None:
        with self._lock:
            return self._mean


@dataclass
class _Turn:
    """One turn's verdicts, observed as they came and not yet written: the turn commits them together."""

    deadline: float               # when its lease ends
    message_ids: dict             # delivery id -> messageId, for the dead-letter lines
    finishes: list = field(default_factory=list)
    requests: int = 0
    recovered: bool = False       # the destination recovered: hurry its retries once these are written
    sent: bool = False            # a request went out (the first one always may)
    local: set = field(default_factory=set)   # delivery ids failed here, not by the vendor: not for the breaker


class _Stopping(Exception):
    """Leave a multi-step event where it is: the runner is stopping, or the lease was lost."""


class _StoreFailed(Exception):
    """The store failed while a step was recorded: not the event's fault, so it fails the turn (the event is
    taken again after its lease), never the event."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


DEFAULT_POLICY = RetryPolicy()   # frozen: one shared default is safe

class DestinationWorker:
    """Delivers one route's queue. Thread-safe: a runner may call ``run_once`` from several threads."""

    def __init__(self, route: Route, store: Store, client, *, owner: str, policy: RetryPolicy = DEFAULT_POLICY,
                 lease_for: float = 60.0, clock=time.time, limiter: RateLimiter | None = None,
                 stop: threading.Event | None = None, rng: random.Random | None = None):
        self.route, self.store, self.client = route, store, client
        self.owner, self.policy, self.lease_for, self.clock = owner, policy, lease_for, clock
        self.limiter = limiter
        self.stop = stop
        self.rng = rng or random.Random()
        self.stats = Stats()
        self.health = Health(route.destination.slug, clock, policy, self.rng)
        self.name = route.destination.slug
        self.batching = route.destination.batching is not None and route.limits.batch
        self.timeout = getattr(client, "timeout", 10.0) or 10.0
        # an event of an action with steps may make a request per step
        self.steps = max((len(a.steps) for a in route.destination.actions.values() if a.steps), default=1)
        self.pace = Pace()
        self.masker = Masker(route.secrets)
        self.more_due = None   # called when a lease comes back full: the runner wakes another thread for the rest

    def __repr__(self) -> str:
        return f"<DestinationWorker {self.name}>"

    def lease_size(self) -> int:
        """How many deliveries the next turn leases: a full batch when batching; else what it sends in
        about ``TURN_SECONDS`` at the pace seen so far, at most ``MOST_PER_TURN``, and only one when the
        lease is too short for more than one request's timeout. The turn itself stops in time
        (``_in_time``), so a slow vendor costs a release, not a lease that runs out mid-turn."""
        batching = self.route.destination.batching
        if self.batching and batching is not None:
            return batching.max_events
        room = self.lease_for - self.timeout * self.steps - WRITE_MARGIN   # what a turn has for more requests
        if room <= 0:
            return 1
        pace = self.pace.mean()
        if pace is None:
            size = FIRST_TURN
        else:
            per_event = max(pace, 0.001) * self.steps
            size = min(int(TURN_SECONDS / per_event), 1 + int(room / per_event))
        rate = self.route.limits.rate
        if rate is not None:
            size = min(size, int(rate * self.lease_for / 4))
        return max(1, min(MOST_PER_TURN, size))

    def run_once(self, now: float | None = None) -> int:
        """One turn: lease, render, send, record. Returns how many deliveries it handled (0: none due).

        The turn's verdicts are written together when it ends, so a killed worker
        re-sends the requests of its current turn (at most ``MOST_PER_TURN``),
        not only the one in flight.
        """
        now = self.clock() if now is None else now
        allowed = self.health.gate(now)  # None: healthy; 1: one probe while failing; 0: backing off as a whole
        if allowed == 0:
            return 0
        try:
            return self._turn(now, self.lease_size() if allowed is None else allowed)
        finally:
            if allowed is not None:
                self.health.probe_done()

    def not_before(self) -> float:
        """When this destination may send again (0: now): the runner does not wake it sooner."""
        return self.health.not_before()

    def _turn(self, now: float, size: int) -> int:
        leased = self.store.lease(self.name, size, self.owner, now, self.lease_for)
        if not leased:
            return 0
        if len(leased) == size and self.more_due is not None:
            self.more_due()
        turn = _Turn(now + self.lease_for, {item.id: item.message_id for item in leased})
        try:
            self._send_leased(turn, leased)
        finally:
            self._flush(turn)   # what was sent is written even when something broke mid-turn
        return len(leased)

    def _send_leased(self, turn: _Turn, leased: list[Leased]) -> None:
        finishes, sendable = self._render(leased)
        self._record(turn, finishes, 0)
        stepped = [(o, item) for o, item in sendable if o.steps is not None]
        if stepped:  # multi-step actions: one event at a time, each step recorded as it completes
            sendable = [(o, item) for o, item in sendable if o.steps is None]
            for position, (_outcome, item) in enumerate(stepped):
                steps = len(self.route.destination.action_for(item.event, self.route.settings).steps)
                if self._stopping() or self._backing_off() or not self._in_time(turn, steps):
                    self._release(turn, [i.id for _, i in stepped[position:]])
                    break
                self._flush(turn)  # its steps write their own progress: the verdicts before them go first
                self._deliver_steps(turn, item)
        try:
            groups = self.route.destination.batch_groups([o for o, _ in sendable], self.route.settings,
                                                         self.route.secrets, enabled=self.batching)
        except Exception as exc:  # noqa: BLE001  the batch cannot be made: each event goes with its own request
            log.warning("%s: the batch request could not be made (%s); sending %d events one by one", self.name,
                        self.masker.text(f"{type(exc).__name__}: {exc}"), len(sendable))
            groups = [(request, [o]) for o, _ in sendable for request in o.requests]
        by_outcome = {id(o): item for o, item in sendable}
        unsent: list[Leased] = []
        for request, outcomes in groups:
            items = [by_outcome[id(o)] for o in outcomes]
            if unsent:  # stopping, the destination just failed, or the lease is nearly over: so for the rest too
                unsent += items
                continue
            sent, verdicts = self._send(turn, request, items, outcomes)
            answered = {f.id for f in verdicts}
            unsent += [item for item in items if item.id not in answered]
            self._record(turn, verdicts, sent)
        if unsent:
            log.debug("%s: %d leased deliveries go back to the queue unsent", self.name, len(unsent))
            self._release(turn, [item.id for item in unsent])

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _backing_off(self) -> bool:
        """The destination failed during this turn: the rest of the turn waits for the breaker's probe."""
        return self.health.not_before() > self.clock()

    def _in_time(self, turn: _Turn, steps: int) -> bool:
        """May the turn send an event of ``steps`` requests? Only if they can time out, and the turn's
        verdicts be written, before its lease ends; the first request always goes (a lease shorter
        than a timeout still sends one a turn)."""
        if turn.sent and turn.deadline - self.clock() < self.timeout * steps + WRITE_MARGIN:
            return False
        turn.sent = True
        return True

    def _record(self, turn: _Turn, finishes: list[Finish], requests: int) -> None:
        """The breaker hears each verdict as it comes (it decides the rest of the turn); the store
        gets them with the turn's others (``_flush``)."""
        turn.finishes += finishes
        turn.requests += requests
        if self.health.observe(finishes, turn.message_ids, turn.local):
            turn.recovered = True

    def _flush(self, turn: _Turn) -> None:
        """Write the verdicts observed so far in one transaction; then count them, and on recovery make
        what waited on its own backoff due now (after the write, so this turn's retries are among them)."""
        finishes, requests, recovered = turn.finishes, turn.requests, turn.recovered
        turn.finishes, turn.requests, turn.recovered = [], 0, False
        if finishes:
            self._write_verdicts(finishes)
        self.stats.add(finishes, requests)
        if recovered:
            self.store.hurry(self.name, self.clock())

    def _write_verdicts(self, finishes: list[Finish]) -> None:
        """The verdicts in one transaction; when that fails, each alone, so that one verdict the store cannot
        write does not lose the others (``_write_alone``)."""
        try:
            self.store.finish(finishes, self.owner, self.clock())
        except Exception:  # noqa: BLE001  perhaps one verdict the store cannot write: each is tried alone
            for finish in finishes:
                self._write_alone(finish)

    def _write_alone(self, finish: Finish) -> None:
        """One verdict; if the store refuses it, the same verdict without its details (reason, errors, request,
        the attempt's error), its state kept. When even that fails the store is failing: the error goes up,
        the leases run out and the deliveries are taken again."""
        try:
            self.store.finish([finish], self.owner, self.clock())
        except Exception as exc:  # noqa: BLE001  this verdict's details: its state and attempt can still be kept
            attempt = finish.attempt and Attempt(finish.attempt.at, finish.attempt.status, None,
                                                 finish.attempt.duration, finish.attempt.step)
            reason = f"the verdict's details could not be stored ({type(exc).__name__})"
            self.store.finish([Finish(finish.id, finish.state, attempt, finish.next_at, reason)], self.owner,
                              self.clock())
            log.error("%s: delivery %s: %s: %s", self.name, finish.id, reason, self.masker.text(str(exc)))

    def _release(self, turn: _Turn, ids: list[int]) -> None:
        """Unsent deliveries back to the queue, after the verdicts so far are written."""
        self._flush(turn)
        if ids:
            self.store.release(self.owner, ids)

    # --- rendering
    def _render(self, leased: list[Leased]):
        """(verdicts, sendable (outcome, item) pairs): each event rendered on its own, whatever it raises its
        own verdict (``_failed``)."""
        finishes, sendable = [], []
        destination = self.route.destination
        for item in leased:
            try:
                reason = self.route.skip_reason(item.event)
                if reason:  # the configuration changed since the event was accepted
                    finishes.append(Finish(item.id, SKIPPED, reason=reason))
                    continue
                outcome = destination.render(item.event, self.route.settings, self.route.secrets)
            except Exception as exc:  # noqa: BLE001  the per-event boundary
                finishes.append(self._failed(item, exc, "the mapping"))
                continue
            if outcome.status == SEND:
                sendable.append((outcome, item))
            elif outcome.status == OUTCOME_REJECTED:
                finishes.append(Finish(item.id, REJECTED, reason=outcome.reason,
                                       errors=[e.as_dict() for e in outcome.errors]))
            else:
                finishes.append(Finish(item.id, SKIPPED, reason=outcome.reason))
        return finishes, sendable

    def _failed(self, item: Leased, exc: Exception, doing: str, attempt: Attempt | None = None) -> Finish:
        """The verdict of one event that raised ``exc`` while ``doing``: dead when a vendor's answer is too large
        to use (the same request gets the same answer), else rejected with the reason."""
        if isinstance(exc, AnswerTooLarge):
            return Finish(item.id, DEAD, attempt, reason=self.masker.text(str(exc)))
        failed = event_failed(exc, doing, self.masker)
        return Finish(item.id, REJECTED, attempt, reason=failed.reason, errors=[failed.problem.as_dict()])

    # --- multi-step actions
    def _deliver_steps(self, turn: _Turn, item: Leased) -> None:
        """Run the steps of one event, resuming after those already done (``item.progress``).

        Each completed step is written to the store (its answer and its attempt)
        before the next one starts: a retry, or another worker after a crash,
        resumes at the step that did not complete, so no completed step is sent
        twice unless the process died between its answer and that write.
        """
        destination, route = self.route.destination, self.route
        event: dict = item.event  # leased events passed intake: JSON objects
        action = destination.action_for(event, route.settings)   # it rendered a moment ago: this cannot fail now
        masker = self.masker
        progress = dict(item.progress or {})
        timing: dict = {"started": self.clock(), "dry_run": True, "status": None}

        def send(request):
            if self.limiter is not None and not self.limiter.acquire(self.stop):
                raise _Stopping
            timing["started"] = self.clock()
            response = self.client.send(request)
            timing["dry_run"] = timing["dry_run"] and response.dry_run
            timing["status"] = response.status
            return response

        def on_answer(name, answer, sent) -> None:
            whole(answer.body, f"step '{name}'")   # a later step reads it: an excerpt will not do
            now = self.clock()
            progress[name] = masker.data(answer.to_dict())
            attempt = Attempt(now, answer.status, None, max(0.0, now - timing["started"]), name,
                              sent=self._recorded(sent.request, 1))
            self.pace.add(attempt.duration)
            try:
                kept = self.store.step_done(item.id, self.owner, progress, attempt, now, now + self.lease_for)
            except Exception as exc:   # the store's failure, not the event's: carried past the boundary
                raise _StoreFailed(exc) from exc
            if not kept:
                raise _Stopping  # the lease ran out and another worker has the event now
            self.stats.add([], 1)

        answers = {name: stepping.Answer.from_dict(data) for name, data in progress.items()}
        try:
            run = destination.run_steps(action, event, route.settings, route.secrets, send, answers, on_answer)
        except _Stopping:
            self._release(turn, [item.id])
            return
        except _StoreFailed as exc:
            raise exc.error from None
        except MappingError as exc:
            failed = destination.mapping_failed(exc, action.name, item.message_id)
            self._record(turn, [Finish(item.id, REJECTED, reason=failed.reason,
                                       errors=[e.as_dict() for e in failed.errors])], 0)
            return
        except RequestError as exc:   # a step's request cannot be sent as built
            self._record(turn, [self._unsendable_verdict(turn, item, exc, timing["started"], None)], 0)
            return
        except AnswerTooLarge as exc:   # a later step would read an answer over the limit: it was sent, not usable
            now = self.clock()
            turn.local.add(item.id)   # the vendor answered: it is not failing
            attempt = Attempt(now, timing["status"], str(exc), max(0.0, now - timing["started"]))
            self._record(turn, [self._failed(item, exc, "the steps", attempt)], 1)
            return
        except Exception as exc:  # noqa: BLE001  the per-event boundary: a step's condition, a fault of ours
            self._record(turn, [self._failed(item, exc, "the steps")], 0)
            return
        unrecorded = bool(run.sent) and not stepping.kept(run.sent[-1])  # kept steps were counted in on_answer
        verdict = self._steps_verdict(item, run, timing["started"])
        if verdict.state == DELIVERED and run.sent and timing["dry_run"]:  # the dry-run sink answered every step
            verdict.state = DRY_RUN
        self._record(turn, [verdict], int(unrecorded))

    def _steps_verdict(self, item: Leased, run, started: float) -> Finish:
        now = self.clock()
        last = run.sent[-1] if run.sent else None
        attempt = None
        if last is not None and not stepping.kept(last):  # kept steps were recorded by on_answer already
            attempt = Attempt(now, last.answer.status if last.answer else None, last.error,
                              max(0.0, now - started), last.step, sent=self._recorded(last.request, 1))
        request = last.request.to_dict() if last is not None else None
        if run.end == stepping.DONE:
            return Finish(item.id, DELIVERED, attempt)
        if run.end == stepping.SKIP:
            return Finish(item.id, SKIPPED, attempt, reason=run.reason)
        if run.end == stepping.REJECT:
            return Finish(item.id, REJECTED, attempt,
                          reason="required fields are missing" if last is None else f"step '{run.step}' rejected the event",
                          errors=[e.as_dict() for e in run.errors])
        if run.end == stepping.RETRY:
            return self._retry_or_give_up(item, attempt, run.retry_after, now, lambda: request, run.reason)
        return Finish(item.id, DEAD, attempt, reason=run.reason, request=request)

    # --- sending
    def _send(self, turn: _Turn, request: Request, items: list[Leased], outcomes: list) -> tuple[int, list[Finish]]:
        """Send one request carrying ``items``; returns (requests sent, a verdict per item), no verdicts
        when it did not go (stopping, backing off, or too little of the lease left)."""
        if self._stopping() or self._backing_off():
            return 0, []
        if self.limiter is not None and not self.limiter.acquire(self.stop):
            return 0, []
        if not self._in_time(turn, 1):  # after the rate limiter's wait, which spends lease time too
            return 0, []
        started = self.clock()
        status, error, asked, sent_state = None, None, None, DELIVERED
        try:
            response = self.client.send(request)
        except RequestError as exc:
            if exc.final and len(items) > 1:   # one event's header must not sink the batch: find it
                return self._split(turn, items, outcomes, sent=0)
            return 0, [self._unsendable_verdict(turn, item, exc, started, lambda o=o: self._alone(o))
                       for item, o in zip(items, outcomes)]
        except TransportError as exc:
            error = str(exc)
        else:
            status = response.status
            sent_state = DRY_RUN if response.dry_run else DELIVERED
            if not 200 <= status < 300:
                error = f"{request.destination} answered {status}: {summarize(response.body, request)}"
                asked = retry_after(response.headers)
        now = self.clock()
        attempt = Attempt(now, status, error, max(0.0, now - started), sent=self._recorded(request, len(items)))
        self.pace.add(attempt.duration)
        if error is None:
            return 1, [Finish(i.id, sent_state, attempt) for i in items]
        if status is None or is_retryable(status):
            return 1, [self._retry_or_give_up(i, attempt, asked, now, lambda o=o: self._alone(o))
                       for i, o in zip(items, outcomes)]
        if 300 <= status < 400:   # not about one event: every half would be redirected too
            return 1, [Finish(i.id, DEAD, attempt, reason=f"{status} is final: a redirect eventmap does not follow "
                                                          f"(the answer says where and why)",
                              request=self._alone(o)) for i, o in zip(items, outcomes)]
        if len(items) > 1:
            return self._split(turn, items, outcomes)
        return 1, [Finish(items[0].id, DEAD, attempt, reason=f"{status} is final: the vendor refused this event",
                          request=request.to_dict())]

    def _unsendable_verdict(self, turn: _Turn, item: Leased, exc: RequestError, started: float, request) -> Finish:
        """A request that could not be sent as built (``RequestError``): rejected with the reason when it is
        final, else retried on its own; logged as a problem with the request, and kept from the breaker
        (``turn.local``): the vendor did not fail."""
        now = self.clock()
        error = self.masker.text(exc.message)
        turn.local.add(item.id)
        log.warning("%s: delivery %s (messageId %s): the request cannot be sent: %s", self.name, item.id,
                    item.message_id, error, extra={"event": "request_problem", "destination": self.name,
                                                   "delivery": item.id, "messageId": item.message_id})
        attempt = Attempt(now, None, error, max(0.0, now - started))
        if not exc.final:
            return self._retry_or_give_up(item, attempt, None, now, request or (lambda: None), error)
        return Finish(item.id, REJECTED, attempt, reason="the request cannot be sent as built",
                      errors=[{"path": exc.path, "message": error}])

    def _retry_or_give_up(self, item: Leased, attempt: Attempt | None, asked, now: float, request,
                          why: str | None = None) -> Finish:
        """Retrying after the policy's wait (or the vendor's Retry-After), or dead past the retry horizon;
        ``request()`` makes what the dead letter keeps, ``why`` the failure a multi-step run gave."""
        next_at = now + self.policy.wait(item.attempts + 1, asked, self.rng)
        if self.policy.gives_up(item.first_at, next_at):
            return Finish(item.id, DEAD, attempt, request=request(),
                          reason=f"gave up after {item.attempts + 1} attempts over the "
                                 f"{describe_seconds(self.policy.retry_for)} retry horizon" + (f": {why}" if why else ""))
        return Finish(item.id, RETRYING, attempt, next_at=next_at)

    def _recorded(self, request: Request, events: int) -> SentRequest:
        """What the store keeps of a request that went out, for the console to show what was sent: masked
        by searching for the secrets' text (``to_dict`` without a twin), not by rendering the request again
        with sentinels as a dead letter's is, which would double the cost of rendering every request;
        bounded as answers are (``SentRequest.recorded``)."""
        return SentRequest.recorded(dataclasses.replace(request, twin=None).to_dict(), events, self.name)

    def _alone(self, outcome) -> dict:
        """The request as it would carry this one event: what a dead letter keeps (masked), never a
        whole batch per event."""
        try:
            request, _ = self.route.destination.batch_groups([outcome], self.route.settings, self.route.secrets,
                                                             enabled=self.batching)[0]
        except Exception:  # noqa: BLE001  the batch request cannot be made for it: the event's own request
            request = outcome.requests[0]
        return request.to_dict()

    def _split(self, turn: _Turn, items: list[Leased], outcomes: list, sent: int = 1) -> tuple[int, list[Finish]]:
        """The vendor refused the whole batch (``sent``: that request), or it could not be sent as built (none
        went): send each half on its own until the bad events stand alone."""
        middle = len(items) // 2
        finishes: list[Finish] = []
        for part_items, part_outcomes in ((items[:middle], outcomes[:middle]), (items[middle:], outcomes[middle:])):
            groups = self.route.destination.batch_groups(part_outcomes, self.route.settings, self.route.secrets,
                                                         enabled=self.batching)
            for request, group in groups:
                lookup = {id(o): i for o, i in zip(part_outcomes, part_items)}
                more, verdicts = self._send(turn, request, [lookup[id(o)] for o in group], group)
                sent += more
                finishes += verdicts
        return sent, finishes
