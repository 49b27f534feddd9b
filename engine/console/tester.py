"""The mapping tester: an event through the server's intake steps and a destination's mapping, and, once
confirmed, sent for real, with the vendor's answer, as Segment's Event Tester does.

Intake is the server's own (``serve/calls.decide_request``: timestamps, ``context.ip``, messageId, the
Segment spec, the route's subscription), so the page shows what a real delivery would send: the request
as a delivery sends it (a destination that batches sends a batch of one). Sending goes through the HTTP
client deliveries use (redirects, answer size and deadline alike) and is never recorded as a delivery.

Plain data for an autoescaping template, secrets masked.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from .. import jsoncodec
from ..answers import RequestError, TransportError
from ..explain import explain, shown
from ..intake import Intake
from ..outcome import SEND
from ..problems import ConfigError
from ..secrets import Masker
from ..serve.calls import decide_request
from ..store import INTAKE, QUEUED
from .pages import masked, pretty, samples

log = logging.getLogger("eventmap.console")

# what the form's buttons ask for
LOAD, RENDER, CONFIRM, SEND_NOW = "load", "render", "confirm", "send"


@dataclass
class Trial:
    """The tester's answer for one event and destination."""

    status: str
    reason: str | None
    errors: list
    requests: list             # as a delivery sends them (a batch of one where the destination batches)
    fields: list
    text: str                  # the outcome as 'eventmap render' prints it (masked)
    prepared: str = ""         # the event after the intake steps, as JSON: what is rendered and sent
    violations: list = field(default_factory=list)   # (rule, path, message, action): its source's plan said so


@dataclass
class Exchange:
    """One request the tester sent and what came back."""

    request: dict
    status: int | None
    body: str = ""
    error: str | None = None


@dataclass
class Sending:
    """What the tester sent, once confirmed."""

    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.exchanges) and all(e.status is not None and 200 <= e.status < 300 for e in self.exchanges)


class Tester:
    """The tester of one console: its setup, the store intake is given (it writes nothing), and how to send."""

    def __init__(self, setup, masker: Masker, store, client, dry_run: bool):
        self.setup, self.masker, self.dry_run = setup, masker, dry_run
        self.routes = {r.destination.slug: r for r in setup.routes}
        self.planned = list(setup.config.plans)   # the sources with a tracking plan: intake checks their events
        self.intake = Intake(setup.engine, setup.routes, store, setup.config.delivery.dedupe_window,
                             plans=setup.config.plans)
        self.client = client   # client(): the HTTP client deliveries use, made per process

    def page(self, form: dict, action: str, ip: str | None, now: float) -> dict:
        chosen = _first(form, "destination") or next(iter(self.routes), "")
        # the source the event comes in from (its tracking plan applies); the first with a plan unless chosen
        source = _first(form, "source") if "source" in form else next(iter(self.planned), "")
        sample = _first(form, "sample")
        examples = samples()
        text = _first(form, "event")
        if not text.strip() or (action == LOAD and sample in examples):
            text = pretty(examples.get(sample) or examples["track"])
        values = {"destinations": [(name, self.masker.text(_masked_settings(r))) for name, r in self.routes.items()],
                  "chosen": chosen, "samples": list(examples), "sample": sample, "event_text": text,
                  "trial": None, "problem": None, "action": action, "sending": None, "dry_run": self.dry_run,
                  "sources": self.planned, "source": source}
        if action not in (RENDER, CONFIRM, SEND_NOW):
            return values
        route = self.routes.get(chosen)
        if route is None:
            values["problem"] = f"destination: {chosen!r} is not configured (configured: {', '.join(self.routes) or 'none'})"
            return values
        if source and source not in self.planned:
            values["problem"] = (f"source: {source!r} has no tracking plan here "
                                 f"(sources with one: {', '.join(self.planned) or 'none'})")
            return values
        try:
            event = jsoncodec.loads_bounded(text)
        except json.JSONDecodeError as exc:
            values["problem"] = f"event:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
            return values
        if not isinstance(event, dict):
            values["problem"] = "event: expected a JSON object (one Segment event)"
            return values
        if action == RENDER:   # the server's intake steps; confirming and sending take the event they made
            event, decided, violations = self._through_intake(event, route, ip, now, source or None)
            if decided is not None:
                decided.violations = violations
                values["trial"] = masked(self.masker, decided)
                return values
        else:
            violations = []
        try:
            trial = values["trial"] = self._trial(route, event)
        except ConfigError as exc:
            values["problem"] = "; ".join(str(p) for p in exc.problems)
            return values
        trial.violations = masked(self.masker, violations)
        if action == SEND_NOW:
            if self.dry_run:
                values["problem"] = "this server sends nothing (the demo, or --dry-run): the tester does not send either"
            elif _first(form, "confirmed") != "yes":
                values["problem"] = "sending must be confirmed on the confirmation page"
            elif trial.status == SEND:
                values["sending"] = self._send(route, event)
        return values

    def _through_intake(self, event: dict, route, ip: str | None, now: float,
                        source: str | None) -> tuple[dict, Trial | None, list]:
        """The event as the server would keep it (``source``'s tracking plan applied), a Trial when intake
        already decides this destination's fate (rejected at intake, skipped or rejected by the route):
        nothing to render then; and how the event breaks the plan, as (rule, path, message, action)."""
        [(new, errors)] = decide_request(self.intake, "batch", {"batch": [event]}, now, ip, source)
        prepared = new.event if isinstance(new.event, dict) else event
        violations = [(v.rule, v.path, v.message, v.action) for v in new.violations]
        mine = next((d for d in new.deliveries if d.destination in (route.destination.slug, INTAKE)), None)
        if mine is None:
            return prepared, Trial("skipped", f"{route.destination.slug} is disabled in the configuration", [], [],
                                   [], "", pretty(prepared)), violations
        if mine.state == QUEUED:
            return prepared, None, violations
        problems = [e.as_dict() for e in errors] if errors else list(mine.errors or [])
        where = "at intake" if mine.destination == INTAKE else f"by the route to {route.destination.slug}"
        return prepared, Trial(mine.state, f"{mine.reason} ({where})" if mine.reason else where, problems, [], [],
                               pretty({"destination": route.destination.name, "status": mine.state,
                                       "reason": mine.reason, "errors": problems}), pretty(prepared)), violations

    def _trial(self, route, event: dict) -> Trial:
        explained = explain(self.setup.engine, route, event)
        outcome = explained.outcome
        requests = [request.to_dict() for request, _ in self._requests(route, outcome)] if outcome.status == SEND else []
        data = outcome.to_dict()
        return masked(self.masker, Trial(data["status"], data["reason"], data["errors"], requests,
                                         [(f.path, f.expression, shown(f)) for f in explained.fields], pretty(data),
                                         pretty(event)))

    @staticmethod
    def _requests(route, outcome):
        """The requests a delivery sends for this one event: batched as the worker batches."""
        batching = route.destination.batching is not None and route.limits.batch
        if outcome.steps is not None:
            return [(request, [outcome]) for request in outcome.requests]
        return route.destination.batch_groups([outcome], route.settings, route.secrets, enabled=batching)

    def _send(self, route, event: dict) -> Sending:
        """Send it for real, as a delivery would (a multi-step action runs its steps), and keep every answer."""
        destination, masker = route.destination, self.masker   # it knows every configured secret
        sending = Sending()
        client = self.client()

        def exchange(request):
            try:
                response = client.send(request)
            except (TransportError, RequestError) as exc:
                sending.exchanges.append(Exchange(request.to_dict(), None, error=masker.text(str(exc))))
                raise
            body = response.body if isinstance(response.body, str) else pretty(response.body)
            sending.exchanges.append(Exchange(request.to_dict(), response.status, masker.text(body)))
            return response

        outcome = destination.render(event, route.settings, route.secrets)
        try:
            if outcome.steps is not None:
                action = destination.action_for(event, route.settings)
                destination.run_steps(action, event, route.settings, route.secrets, exchange)
            else:
                for request, _ in self._requests(route, outcome):
                    exchange(request)
        except (TransportError, RequestError):
            pass   # kept in the exchange: the page says there was no answer, and why
        except Exception as exc:  # noqa: BLE001  a step's condition or a fault of ours: said on the page
            sending.exchanges.append(Exchange({}, None, error=masker.text(f"{type(exc).__name__}: {exc}")))
        log.info("console: the mapping tester sent an event to %s: %s", route.destination.slug,
                 ", ".join(str(e.status or "no answer") for e in sending.exchanges) or "nothing sent",
                 extra={"event": "tester_sent", "destination": route.destination.slug})
        return masked(self.masker, sending)


def _masked_settings(route) -> str:
    return pretty(Masker(route.secrets).data(route.settings))


def _first(values: dict, key: str) -> str:
    found = values.get(key) or [""]
    return found[0]
