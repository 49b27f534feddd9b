"""A loaded destination: compiled actions plus the rules that turn one event into requests."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from . import steps as stepping
from .load.settings import SettingsSpec
from .map.language import MappingError, Scope
from .outcome import REJECTED, SEND, SKIPPED, Outcome
from .problems import Problem
from .render.action import Batching, Envelope
from .render.request import Request
from .secrets import Masker, with_sentinels

log = logging.getLogger(__name__)
TWIN_ROUTES = 1024  # routes whose sentinel settings are kept


@dataclass(frozen=True)
class Limits:
    """What the vendor tolerates: requests in flight at once, and requests per second (None: no cap)."""

    concurrency: int = 4
    rate: float | None = None
    batch: bool = True     # a routes file may turn batching off for one destination


@dataclass
class Destination:
    name: str          # display name, the key in an event's integrations object
    slug: str          # file name without .yaml, used on the command line
    file: str
    description: str
    settings: SettingsSpec
    actions: dict      # call type -> Action
    envelope: Envelope | None
    batching: Batching | None
    limits: Limits = Limits()
    obeys_integrations: bool = True   # false for a hub (Segment) whose integrations object is for what is behind it
    _sentinels: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _warned_unbatchable: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self):
        # call type -> (named actions that take some of its events, in file order; its own action or None)
        self.by_type: dict[str, tuple[list, Any]] = {}
        for action in self.actions.values():
            named, own = self.by_type.get(action.call_type, ([], None))
            if action.subscription is None:
                own = action
            else:
                named = [*named, action]
            self.by_type[action.call_type] = (named, own)
        # the hot path's shortcut: a call type with no named actions always goes to its own action
        self.only_action = {kind: own for kind, (named, own) in self.by_type.items() if not named}
        self.labels = {action.name: f"{self.name} {action.name}" for action in self.actions.values()}
        # what wraps each action's body: the destination's envelope, the action's own, or none (False)
        self.envelopes = {action.name: self.envelope if action.envelope is None else (action.envelope or None)
                          for action in self.actions.values()}

    @property
    def call_types(self) -> list[str]:
        """The call types some action takes, in file order."""
        return list(self.by_type)

    def action_for(self, event: dict, settings: dict):
        """The first named action whose subscription matches, else the call type's own action (None: no action).

        Raises MappingError when a subscription's condition cannot be evaluated on this event."""
        kind = event.get("type") or ""
        if kind in self.only_action:
            return self.only_action[kind]
        named, own = self.by_type.get(kind, ([], None))
        for action in named:
            if action.subscription.matches(event, settings):
                return action
        return own

    def render(self, event: dict, settings: dict, secrets: frozenset, *, client=None) -> Outcome:
        """Map one already-validated event; never raises for bad event data.

        Runs the action's generated Python, bound to the route (its settings-only
        values made once); a route whose settings make one of those fail runs the
        same code node by node, so every event gets that error.
        """
        call_type = event.get("type")
        message_id = event.get("messageId")
        try:
            action = self.action_for(event, settings)
        except MappingError as exc:   # a named action's condition fails on this event's data: this event only
            return self.mapping_failed(exc, exc.path[1], message_id)
        if action is None:
            return Outcome(self.name, SKIPPED, reason=self.no_action_reason(event), message_id=message_id)
        if action.steps is not None:
            return self._render_steps(action, event, settings, secrets, client)
        call_type, label = action.name, self.labels[action.name]
        envelope = self.envelopes[call_type]
        bound = action.bound(settings, envelope, self.name)
        try:
            if bound is None:
                payload, scope = action.payload(event, settings)
                missing = action.missing_required(payload, scope, label)
            else:
                payload, vars = bound.payload(event)
                missing = bound.required and bound.missing(payload, vars, label, event)
            if missing:
                return Outcome(self.name, REJECTED, errors=missing, message_id=message_id, action=call_type,
                               reason="required fields are missing")
            if bound is None:
                body = envelope.wrap([payload], settings) if envelope else payload
                request = action.endpoint.build(scope, body, self.name, call_type, (message_id,), secrets)
            else:
                body = bound.envelope([payload]) if envelope else payload
                request = bound.request(event, vars, body, self.name, (message_id,), secrets)
        except MappingError as exc:
            return self.mapping_failed(exc, call_type, message_id)
        if secrets:  # how to render it again with sentinels, should it be shown (twin_shown); a tuple is cheap
            request.twin = (self, settings, (event,), False)
        # positional: this runs once per event and destination, and keywords cost twice as much
        return Outcome(self.name, SEND, [request], None, [], [], message_id, [payload], call_type)

    def run_steps(self, action, event: dict, settings: dict, secrets: frozenset, send=None,
                  answers: dict | None = None, on_answer=None):
        """Walk a multi-step action for one event (engine/steps.py); raises MappingError on bad data.

        Steps see the event, settings, the action's vars and earlier answers as
        ``steps.NAME.status`` / ``steps.NAME.body``. A missing required var
        ends the run rejected before anything is sent.
        """
        context = stepping.ActionContext(event, settings, action, self.name, (event.get("messageId"),), secrets)
        return stepping.run(action.steps, action.sequence, context, send, answers, on_answer, action.ahead)

    def _render_steps(self, action, event: dict, settings: dict, secrets: frozenset, client) -> Outcome:
        """Offline: every request the steps make whatever the answers (``steps.ahead``) and the plan of the
        rest; with answers (saved, or a live client), every request sent and what each answer did."""
        message_id, call_type = event.get("messageId"), action.name
        try:
            if client is None:   # offline, the steps sure to run are what is shown (unless none of them runs)
                context = stepping.ActionContext(event, settings, action, self.name, (message_id,), secrets)
                _, shown, rejected = stepping.prepare_ahead(action.steps, action.ahead, context)
                if rejected is not None:
                    return Outcome(self.name, REJECTED, errors=rejected[1], message_id=message_id, action=call_type,
                                   reason="required fields are missing")
                if shown:
                    return Outcome(self.name, SEND, [request for _, request in shown], None, [], [], message_id, [],
                                   call_type, action.plan(tuple(name for name, _ in shown)))
            run = self.run_steps(action, event, settings, secrets, client.send if client is not None else None)
        except MappingError as exc:
            return self.mapping_failed(exc, call_type, message_id)
        requests = [sent.request for sent in run.sent]
        if run.end == stepping.REJECT:
            trace = self._trace(run, secrets) + [{"step": run.step, "status": None, "then": "reject (not sent)"}]
            return Outcome(self.name, REJECTED, requests, errors=run.errors, message_id=message_id, action=call_type,
                           reason="required fields are missing" if not run.sent else f"step '{run.step}' rejected the event",
                           steps=trace if run.sent else None)
        if run.end == stepping.OFFLINE:
            shown = run.preview or [(run.step, run.pending)]
            return Outcome(self.name, SEND, [request for _, request in shown], message_id=message_id,
                           action=call_type, steps=action.plan(tuple(name for name, _ in shown)))
        if not requests:
            return Outcome(self.name, SKIPPED, reason=f"no step of {self.name} {call_type} applies to this event",
                           message_id=message_id, action=call_type)
        reason = run.reason if run.end != stepping.DONE else None
        return Outcome(self.name, SEND, requests, reason, message_id=message_id, action=call_type,
                       steps=self._trace(run, secrets))

    @staticmethod
    def _trace(run, secrets: frozenset) -> list[dict]:
        """Per step sent: its status, the rule that applied, the answer (masked) and any error."""
        masker = Masker(secrets)
        return [{"step": s.step, "status": s.answer.status if s.answer else None, "then": s.then,
                 **({"answer": masker.data(s.answer.body)} if s.answer is not None else {}),
                 **({"error": s.error} if s.error else {})} for s in run.sent]

    def mapping_failed(self, exc: MappingError, action: str, message_id) -> Outcome:
        """The rejection for data the mapping could not take (a filter refused it), naming where in the file."""
        where = ".".join(str(p) for p in exc.path)
        return Outcome(self.name, REJECTED, errors=[Problem(where, f"{self.labels[action]}: {exc.message}")],
                       message_id=message_id, action=action, reason="the mapping could not be applied")

    def no_action_reason(self, event: dict) -> str:
        call_type = event.get("type")
        if call_type not in self.by_type:
            return f"call type '{call_type}' is not accepted by {self.name} (accepts: {', '.join(self.by_type)})"
        named = self.by_type[call_type][0]
        return (f"no action of {self.name} takes this {call_type} (" +
                "; ".join(f"{a.name}: {a.subscription.describe()}" for a in named) + ")")

    def batch(self, outcomes: list[Outcome], settings: dict, secrets: frozenset, enabled: bool = True) -> list[Request]:
        """Combine the sendable outcomes into as few requests as the vendor allows (``enabled`` false: one each)."""
        return [request for request, _ in self.batch_groups(outcomes, settings, secrets, enabled)]

    def batch_groups(self, outcomes: list[Outcome], settings: dict, secrets: frozenset,
                     enabled: bool = True) -> list[tuple[Request, list[Outcome]]]:
        """Each request with the outcomes it carries, so a sender can report per event.

        Actions without batching (or a destination without it, or ``enabled``
        false) keep one request per event; order is preserved within each group.
        """
        requests: list[tuple[Request, list[Outcome]]] = []
        if self.batching is not None and self.batching.unbatchable and enabled:
            if not self._warned_unbatchable:   # the loader warned with file:line; the log says it once too
                self._warned_unbatchable = True
                log.warning("%s: each event is sent as its own request, not in batches: %s", self.name,
                            self.batching.unbatchable)
            enabled = False
        if self.batching is None or not enabled:
            return [(r, [o]) for o in outcomes if o.status == SEND for r in o.requests]
        group: list[Outcome] = []
        # max_bytes counts the items as JSON, the commas between them, and the envelope around
        # one item; exact for envelopes that embed the items as JSON (arrays, {"batch": [...]})
        # and whose other fields do not grow with the number of items.
        first = next((o.items[0] for o in outcomes if o.status == SEND and o.items), None)
        try:
            overhead = self._envelope_size(settings, first)
        except MappingError:  # the envelope fails for these items: _batched sends them one by one
            overhead = 0
        size = overhead
        for outcome in outcomes:
            if outcome.status != SEND:
                continue
            if not self.actions[outcome.action].batched:
                requests.extend((r, [outcome]) for r in outcome.requests)
                continue
            item_size = sum(len(_json_bytes(item)) + 1 for item in outcome.items)
            full = len(group) >= self.batching.max_events or bool(
                self.batching.max_bytes and group and size + item_size > self.batching.max_bytes)
            if full:
                requests += self._batched(group, settings, secrets)
                group, size = [], overhead
            group.append(outcome)
            size += item_size
        if group:
            requests += self._batched(group, settings, secrets)
        return requests

    def _batched(self, group: list[Outcome], settings: dict, secrets) -> list[tuple[Request, list[Outcome]]]:
        """One request for the group; each event's own request when the batch request cannot be made.

        The batch request's templates see ``items`` and ``settings``, not one event: a header that reads
        the event fails there, and the events must still go out rather than fail the whole lease.
        """
        try:
            return [(self._batch_request(group, settings, secrets), group)]
        except MappingError as exc:
            log.warning("%s: the batch request could not be made (%s: %s); sending %d events one by one",
                        self.name, ".".join(map(str, exc.path)), exc.message, len(group))
            return [(request, [outcome]) for outcome in group for request in outcome.requests]

    def _envelope_size(self, settings: dict, sample=None) -> int:
        """Bytes of the envelope around the items, less one comma (items are counted with theirs).

        Measured around one real item, not an empty list: an envelope such as
        ``{data: {"@path": items}}`` drops an empty list altogether.
        """
        assert self.batching is not None  # only batching destinations batch
        envelope = self.batching.envelope or self.envelope
        if sample is None:
            return len(_json_bytes(envelope.wrap([], settings) if envelope else []))
        wrapped = envelope.wrap([sample], settings) if envelope else [sample]
        return len(_json_bytes(wrapped)) - len(_json_bytes(sample)) - 1

    def _batch_request(self, group: list[Outcome], settings: dict, secrets) -> Request:
        items = [item for outcome in group for item in outcome.items]
        assert self.batching is not None  # only batching destinations batch
        envelope = self.batching.envelope or self.envelope
        body = envelope.wrap(items, settings) if envelope else items
        scope = Scope({"items": items}, settings, {})
        ids = tuple(outcome.message_id for outcome in group)
        request = self.batching.endpoint.build(scope, body, self.name, "batch", ids, secrets)
        twins = [twin for outcome in group if (twin := outcome.requests[0].twin) is not None]
        if secrets and len(twins) == len(group):
            request.twin = (self, settings, tuple(event for twin in twins for event in twin[2]), True)
        return request

    def sentinel_settings(self, settings: dict) -> tuple[dict, dict]:
        """(``settings`` with a sentinel for each secret, {sentinel: secret}), kept per settings object.

        Keyed by identity, like ``Action.bound``, so the generated code bound to the sentinel
        settings is kept too.
        """
        entry = self._sentinels.get(id(settings))
        if entry is None or entry[0] is not settings:
            if len(self._sentinels) >= TWIN_ROUTES:
                self._sentinels.clear()
            entry = (settings, with_sentinels(settings, self.settings.secret_names))
            self._sentinels[id(settings)] = entry
        return entry[1]

    def twin_shown(self, settings: dict, events: tuple, batched: bool) -> tuple[dict, dict] | None:
        """Masking by provenance: the request of ``events`` rendered again with sentinels for the secret
        settings, as ``to_dict(True)``, and {sentinel: secret}; None when a sentinel made a filter fail.

        A request of a route with secrets carries ``(destination, settings, events, batched)`` as its
        twin; this runs only when the request is shown (``to_dict``, ``repr``, a dead letter), never
        on the way to the vendor.
        """
        twin_settings, sentinels = self.sentinel_settings(settings)
        outcomes = [self.render(event, twin_settings, frozenset()) for event in events]
        if any(outcome.status != SEND for outcome in outcomes):
            return None
        if batched:
            try:
                request = self._batch_request(outcomes, twin_settings, frozenset())
            except MappingError:  # a sentinel a filter cannot take
                return None
        else:
            request = outcomes[0].requests[0]
        return request.to_dict(show_secrets=True), sentinels


def _json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
