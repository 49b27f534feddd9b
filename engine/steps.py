"""Named HTTP steps run in order: source lookups and multi-step destination actions are one mechanism.

A step is a request (and perhaps a body) built from what came before it: the
event or webhook payload, settings, vars and the answers of earlier steps.
Each answer status picks what happens next (``on_status``, by exact status or
by class such as ``4xx``): carry on, carry on with the answer read as null,
stop as done, skip the rest with a reason, fail for good, reject, or run
another named step (update-or-create, lookup-then-write). Without a rule, 2xx
carries on, a retryable status (408, 423, 429, 5xx but 501) or no answer at
all asks for a retry, and any other status fails for good.

Everything here is compiled at load time (``Step``); ``run`` walks the steps
with a ``send`` function (a live client or saved answers) or without one
(offline: it stops before the first request it would make and says so).
Answers already known (a resumed delivery, ready-made lookups) are not asked
again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .answers import TransportError, is_retryable, retry_after, summarize
from .map.codegen import scopes_condition
from .map.language import MappingError, Node, Scope, is_empty, is_truthy, plain_steps, slots_of
from .problems import Problem
from .render.endpoint import Endpoint
from .secrets import Masker

# what an answer status may do (the keys of an on_status rule); retry: try the event again later, as a 5xx does
CONTINUE, EMPTY, DONE, SKIP, FAIL, REJECT, RUN, RETRY = "continue", "empty", "done", "skip", "fail", "reject", "run", "retry"
RULE_KINDS = (CONTINUE, EMPTY, DONE, SKIP, FAIL, REJECT, RUN, RETRY)
# how a run ends besides those: (offline) stopped before a request
OFFLINE = "offline"
STATUS_KEY = re.compile(r"^[1-5]([0-9][0-9]|xx)$")
STEP_READ = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
LOOKUP_READ = re.compile(r"(?<![\w.])lookups\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")   # a source's answers
VAR_READ = re.compile(r"(?<![\w.])vars\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Rule:
    """What one answer status does: ``kind`` (RULE_KINDS), a message template, or the step to run."""

    kind: str
    message: Node | None = None
    target: str | None = None

    def describe(self) -> str:
        if self.kind == RUN:
            return f"run {self.target}"
        if self.message is not None:
            return f"{self.kind}: {self.message.describe()}"
        return self.kind


def condition_holds(condition, data: dict, where: tuple, text: str | None) -> bool:
    """A step's JMESPath condition on this event and its answers; one it cannot be evaluated on (``contains()``
    of a missing field) is this event's MappingError, as an action's ``when`` is, never a crash of its turn."""
    try:
        return is_truthy(condition.search(data))
    except Exception as exc:  # noqa: BLE001  jmespath raises its own errors and Python's TypeError
        raise MappingError(where, f"when {text}: cannot be evaluated on this event: {type(exc).__name__}: {exc}") \
            from None


@dataclass
class Step:
    """One named request of a plan, compiled once at load."""

    name: str
    endpoint: Endpoint
    when: Any = None                  # compiled JMESPath over the step's data, or None
    when_text: str | None = None
    requires: list = field(default_factory=list)   # (path, compiled JMESPath, message Node or None): inputs
    vars: list = field(default_factory=list)       # (name, Node), evaluated in order
    body: Node | None = None
    required: list = field(default_factory=list)   # render.action.Required: output fields of the body
    on_status: dict = field(default_factory=dict)  # "404" or "4xx" -> Rule
    # (condition text, compiled JMESPath, Rule): checked in order when on_status would carry on with the answer
    on_answer: list = field(default_factory=list)
    fallback: bool = False            # runs only when another step's rule names it
    action: Any = None                # a destination step as an Action, for its generated code (render/compiled.py)
    reads_answers: bool = False       # its when, requires, vars, body or request read an earlier answer

    def __post_init__(self):
        self._when_keys = plain_steps(self.when.parsed) if self.when is not None else None
        self._holds: Any = None
        self._inherited: list[str] | None = None
        self.inherited_read_answers = False
        self.left_out: list[str] | None = None  # the action's vars not among them

    def inherited_vars(self) -> list[str]:
        """The names of the action's vars that come first in ``action``'s (those it reads), in order."""
        if self._inherited is None:
            own = len(self.action.vars) - len(self.vars)
            self._inherited = [name for name, _ in self.action.vars[:own]]
            self.inherited_read_answers = bool(step_reads([node for _, node in self.action.vars[:own]], ()))
        return self._inherited

    def runs(self, data: dict) -> bool:
        """Is ``when`` true for ``data`` (the scopes by name)? A plain path (``vars.custom``) is read as dict
        lookups, as generated code reads paths; anything else is searched with JMESPath."""
        keys = self._when_keys
        if keys is None:
            return condition_holds(self.when, data, ("steps", self.name, "when"), self.when_text)
        value: object = data
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return is_truthy(value)

    def holds(self, event: dict, steps: dict, variables: dict, settings: dict) -> bool:
        """``runs`` on an action's scopes given one by one (its generated code reads them as they are)."""
        if self._holds is None:
            self._holds = scopes_condition(self.when, ("event", "steps", "vars", "settings"))
        try:
            return self._holds(event, steps, variables, settings)
        except Exception as exc:  # noqa: BLE001  as condition_holds: this event's MappingError
            raise MappingError(("steps", self.name, "when"), f"when {self.when_text}: cannot be evaluated on this "
                                                              f"event: {type(exc).__name__}: {exc}") from None

    def rule(self, status: int) -> Rule:
        """The rule for this status: exact, then its class, then the defaults."""
        rule = self.on_status.get(str(status)) or self.on_status.get(f"{status // 100}xx")
        if rule is not None:
            return rule
        if 200 <= status < 300:
            return Rule(CONTINUE)
        return Rule(RETRY if is_retryable(status) else FAIL)

    def decide(self, name: str, answer: Answer, answers: dict, context: Context) -> Rule:
        """What this answer does: its status rule; when that carries on, the first ``on_answer`` rule whose
        condition holds on the answer (read as ``steps.NAME`` / ``lookups.NAME``, with everything before)."""
        rule = self.rule(answer.status)
        if not self.on_answer or rule.kind not in (CONTINUE, EMPTY):
            return rule
        seen = {**answers, name: answer}
        data = context.condition_data(context.scope_for(seen), seen)
        for i, (text, condition, then) in enumerate(self.on_answer):
            if condition_holds(condition, data, ("steps", self.name, "on_answer", i, "when"), text):
                return then
        return rule

    def rules(self) -> list[Rule]:
        """Every rule this step has: by status, then by answer."""
        return [*self.on_status.values(), *(then for _, _, then in self.on_answer)]

    def may_stop_on_success(self) -> bool:
        """True when a 2xx answer may end the run or change its course (a 2xx rule that does not carry on,
        or a rule on the answer's body): the steps after it are not sure to run."""
        return bool(self.on_answer) or any(key.startswith("2") and rule.kind not in (CONTINUE, EMPTY)
                                           for key, rule in self.on_status.items())

    def plan(self) -> dict:
        """What this step does, for offline views: its request, condition and rules."""
        url = self.endpoint.url
        data: dict = {"step": self.name, "request": f"{self.endpoint.method} {getattr(url, 'source', None) or url.describe()}"}
        if self.when_text:
            data["when"] = self.when_text
        if self.fallback:
            data["runs"] = "only when another step's rule asks for it"
        if self.on_status:
            data["on_status"] = {key: rule.describe() for key, rule in self.on_status.items()}
        if self.on_answer:
            data["on_answer"] = [{"when": text, "then": then.describe()} for text, _, then in self.on_answer]
        return data


@dataclass
class Answer:
    status: int
    body: object = None

    def to_dict(self) -> dict:
        return {"status": self.status, "body": self.body}

    @classmethod
    def from_dict(cls, data: dict) -> Answer:
        return cls(data["status"], data.get("body"))


@dataclass
class Sent:
    """One request a run made, and what came back (None: no answer, ``error`` says why)."""

    step: str
    request: object
    answer: Answer | None
    error: str | None = None
    then: str | None = None          # the rule that applied


@dataclass
class Run:
    """How walking the steps ended."""

    end: str                          # DONE (every step done, or a done rule), SKIP, FAIL, REJECT, RETRY, OFFLINE
    answers: dict                     # name -> Answer, every step that completed (resumed ones included)
    sent: list[Sent] = field(default_factory=list)
    step: str | None = None           # the step that ended the run
    reason: str | None = None
    errors: list[Problem] = field(default_factory=list)
    pending: object = None            # OFFLINE: the request the next step would send
    # (name, request) of each step sure to run whatever the answers (``ahead``), prepared before any request
    preview: list = field(default_factory=list)
    retry_after: float | None = None  # RETRY: the wait the vendor asked for (Retry-After), if any


SKIPPED_STEP = object()   # what Context.prepare returns for a step whose `when` is false
NO_ANSWERS: dict = {}     # ``steps`` before any step answered (read only)


class Context:
    """What a run needs from its caller: how steps see their data, and how messages name things."""

    __slots__ = ("scope_for", "noun", "root", "destination", "message_ids", "secrets")

    def __init__(self, scope_for, noun: str, root: str, destination: str, message_ids: tuple = (),
                 secrets: frozenset = frozenset()):
        self.scope_for = scope_for    # answers -> Scope (a fresh scope per step, vars included)
        self.noun, self.root = noun, root   # "lookup"/"lookups" or "step"/"steps", for messages
        self.destination, self.message_ids, self.secrets = destination, message_ids, secrets

    def prepare(self, step: Step, answers: dict):
        """The step's request; SKIPPED_STEP when its ``when`` is false; a list of Problems when an
        input or output field it requires is empty. The interpreter; a caller may do it faster."""
        scope = self.scope_for(answers)
        if step.when is not None and not step.runs(self.condition_data(scope, answers)):
            return SKIPPED_STEP
        missing = _missing_inputs(step, self.condition_data(scope, answers), scope, self)
        if missing:
            return missing
        for var, node in step.vars:
            scope.set_var(var, node.evaluate(scope))
        body = step.body.evaluate(scope) if step.body is not None else None
        label = f"{self.destination} {self.noun} {step.name}"
        rules = step.action.required if step.action is not None else step.required
        missing = [self._required_problem(step, rule, label, scope) for rule in rules if rule.missing(body, scope.vars)]
        if missing:
            return missing
        name = step.action.name if step.action is not None else f"{self.noun} {step.name}"
        return step.endpoint.build(scope, body, self.destination, name, self.message_ids, self.secrets)

    def condition_data(self, scope: Scope, answers: dict) -> dict:
        """What a step's ``when`` and ``requires`` read: the scopes by name (a source's data holds
        ``payload`` and ``lookups`` as keys), with ``vars`` and ``settings``."""
        return {**scope.event, "vars": scope.vars, "settings": scope.settings}

    def _required_problem(self, step: Step, rule, label: str, scope: Scope) -> Problem:
        """A step's own required fields are named under ``steps.NAME``; its action's (vars) as written.
        Messages are templates, rendered with the step's scope (its answers, vars and settings)."""
        problem = (step.action.required_problem(rule, label, lambda: scope) if step.action is not None else
                   Problem(rule.path, rule.text(scope) or f"{label}: '{rule.path}' is required but missing or empty"))
        if not any(rule is own for own in step.required):
            return problem
        return Problem(f"{self.root}.{step.name}.{problem.path}", problem.message)


class ActionContext(Context):
    """A destination action's steps: each runs as the generated Python of ``step.action``
    (render/compiled.py), as a single-request action does; the interpreter where that cannot bind.

    ``step.action`` carries the action's vars and required before the step's own, so one
    generated call per step maps it; the action's vars alone are worked out only when a
    ``when`` or the interpreter needs them.
    """

    __slots__ = ("event", "settings", "action", "_variables")

    def __init__(self, event: dict, settings: dict, action, destination: str, message_ids: tuple, secrets: frozenset):
        # built once per event and destination: plain assignments, no keyword passing
        self.scope_for, self.noun, self.root = self._scope, "step", "steps"
        self.destination, self.message_ids, self.secrets = destination, message_ids, secrets
        self.event, self.settings, self.action = event, settings, action
        self._variables: dict | None = None

    def variables(self) -> dict:
        if self._variables is None and not self.action.vars:  # none to work out
            self._variables = {}
        if self._variables is None:
            bound = self.action.bound(self.settings, None, self.destination)
            if bound is not None:
                self._variables = bound.payload(self.event)[1]
            else:
                scope = Scope(self.event, self.settings, {})
                for name, node in self.action.vars:
                    scope.set_var(name, node.evaluate(scope))
                self._variables = scope.vars
        return self._variables

    def _given(self, step: Step, answers: dict) -> dict | None:
        """The action's vars the step's code reads, when ``when`` has worked them out already for this data
        (no answers yet, or vars that read none): the step's code then computes only its own."""
        if self._variables is None:
            return None
        inherited = step.inherited_vars()
        if answers and inherited and step.inherited_read_answers:
            return None
        if step.left_out is None:  # the action's vars the step does not read, worked out once
            step.left_out = [name for name, _ in self.action.vars if name not in inherited]
        given = self._variables.copy()  # the action's vars, in their order, less those: a copy is cheaper
        for name in step.left_out:
            del given[name]
        return given

    def _data(self, answers: dict) -> dict:
        """The event, plus ``steps`` once there are answers to read."""
        if not answers:
            return self.event
        return {**self.event, "steps": {name: answer.to_dict() for name, answer in answers.items()}}

    def _scope(self, answers: dict) -> Scope:
        return Scope(self._data(answers), self.settings, dict(self.variables()))

    def condition_data(self, scope: Scope, answers: dict) -> dict:
        """An action's scopes: ``event`` (the event itself), ``steps``, ``vars`` and ``settings``."""
        return {"event": self.event, "steps": {name: answer.to_dict() for name, answer in answers.items()},
                "vars": scope.vars, "settings": self.settings}

    def prepare(self, step: Step, answers: dict):
        action = step.action
        if action is None or step.requires:
            return super().prepare(step, answers)
        data = self._data(answers) if answers else self.event  # runs per step and event: no call when no answers
        if step.when is not None and not step.holds(self.event, data.get("steps", NO_ANSWERS), self.variables(),
                                                    self.settings):
            return SKIPPED_STEP  # (the interpreter's own when, in super().prepare, answers the same)
        bound = action.bound(self.settings, None, self.destination)
        if bound is None:
            return super().prepare(step, answers)
        body, variables = bound.payload(data, self._given(step, answers) if self._variables is not None else None)
        found = bound.required and bound.compiled.missing_required(body, variables)
        if found:
            label = f"{self.destination} {self.action.name}"
            return [self._required_problem(step, bound.required[i].rule, label, Scope(data, self.settings, variables))
                    for i in found]
        return bound.request(data, variables, body, self.destination, self.message_ids, self.secrets)


def run(steps: dict, sequence: list[str], context: Context, send=None, answers: dict | None = None,
        on_answer=None, sure: list[str] | None = None) -> Run:
    """Walk ``sequence`` (names in ``steps``), running fallbacks where a rule asks for them.

    ``send(request) -> Response`` may raise TransportError; None runs offline.
    ``answers`` holds steps already done (not sent again); ``on_answer(name,
    answer, sent)`` is called after each step that completed, before the next
    one starts, so a caller can keep it durably. MappingError propagates.
    ``sure``: ``ahead(steps, sequence)``, when the caller worked it out once.
    """
    answers = dict(answers or {})
    result = Run(DONE, answers)
    prepared: dict = {}
    if not answers:   # before the first request: the steps sure to run are made, and checked, first
        prepared, result.preview, rejected = prepare_ahead(steps, sure if sure is not None else ahead(steps, sequence),
                                                           context)
        if rejected is not None:
            return _end(result, REJECT, rejected[0], errors=rejected[1])
    position, queued = 0, None
    while True:
        if queued is not None:
            name, queued = queued, None
        elif position < len(sequence):
            name, position = sequence[position], position + 1
        else:
            return result
        step = steps[name]
        if name in answers:          # resumed: the same rule decides again what comes next
            rule = step.decide(name, answers[name], {n: a for n, a in answers.items() if n != name}, context)
            queued = rule.target if rule.kind == RUN else None
            continue
        # a step that reads no answer makes the same request now as before the first one was sent
        request = prepared.pop(name) if name in prepared else context.prepare(step, answers)
        if request is SKIPPED_STEP:
            continue
        if isinstance(request, list):
            return _end(result, REJECT, name, errors=request)
        if send is None:
            result.pending = request
            return _end(result, OFFLINE, name,
                        reason=f"{context.noun} '{name}' needs an HTTP client or a ready-made response")
        try:
            response = send(request)
        except TransportError as exc:
            result.sent.append(Sent(name, request, None, str(exc), RETRY))
            return _end(result, RETRY, name, reason=f"{context.noun} '{name}' failed: {exc}")
        answer = Answer(response.status, response.body)
        rule = step.decide(name, answer, answers, context)
        sent = Sent(name, request, answer, None, rule.kind if rule.kind != RUN else f"run {rule.target}")
        result.sent.append(sent)
        if rule.kind in (CONTINUE, EMPTY, RUN):
            answers[name] = answer if rule.kind != EMPTY else Answer(answer.status, None)
            if on_answer is not None:
                on_answer(name, answers[name], sent)
            queued = rule.target if rule.kind == RUN else None
            continue
        if rule.kind == DONE:
            answers[name] = answer
            return _end(result, DONE, name)
        if rule.kind == RETRY:
            result.retry_after = retry_after(response.headers)
        if rule.message is not None:   # a template: it may read this answer too
            text = str(rule.message.evaluate(context.scope_for({**answers, name: answer})))
        elif rule.kind == RETRY or rule.kind == FAIL:
            shown = f"{request.method} {Masker(context.secrets).text(request.full_url())}"
            owner = "source" if context.noun == "lookup" else "destination"
            hint = f" (check the {owner}'s credentials)" if response.status in (401, 403) else ""
            text = f"{context.noun} '{name}' got HTTP {response.status} from {shown}{hint}"
            if context.noun != "lookup":
                text += f": {summarize(response.body, request)}"
        else:
            text = f"{context.noun} '{name}' answered {response.status}"
        sent.error = text
        if rule.kind == REJECT:
            return _end(result, REJECT, name, errors=[Problem(f"{context.root}.{name}", text)])
        return _end(result, rule.kind, name, reason=text)


def ahead(steps: dict, sequence: list[str]) -> list[str]:
    """The steps of ``sequence`` sure to be reached whatever the answers, in order: up to the first that
    reads an earlier answer, and no further than one whose 2xx answer may stop or redirect the run.

    They are made (and their required fields checked) before the first request, so an event
    a later step would reject is rejected before anything is sent; offline views show them all.
    """
    names = []
    for name in sequence:
        step = steps[name]
        if step.reads_answers:
            break
        names.append(name)
        if step.may_stop_on_success():
            break
    return names


def prepare_ahead(steps: dict, sure: list[str], context: Context) -> tuple[dict, list, tuple | None]:
    """Make the requests of ``sure`` (``ahead``) before any is sent: ({name: request or SKIPPED_STEP},
    [(name, request)] of those that run, None), or at the first missing required field (..., (name, problems))."""
    prepared: dict = {}
    preview: list = []
    for name in sure:
        request = prepared[name] = context.prepare(steps[name], {})
        if isinstance(request, list):
            return prepared, preview, (name, request)
        if request is not SKIPPED_STEP:
            preview.append((name, request))
    return prepared, preview, None


def kept(sent: Sent) -> bool:
    """True when the run carried on after this answer (so ``on_answer`` saw it)."""
    return sent.then in (CONTINUE, EMPTY) or (sent.then or "").startswith(RUN + " ")


def _end(result: Run, end: str, step: str, reason: str | None = None, errors: list | None = None) -> Run:
    result.end, result.step, result.reason, result.errors = end, step, reason, errors or []
    return result


def _missing_inputs(step: Step, data: dict, scope: Scope, context: Context) -> list[Problem]:
    """A Problem per ``requires`` input that is empty; a message is a template, rendered with ``scope``."""
    if not step.requires:
        return []
    problems = []
    for path, expression, message in step.requires:
        if not is_empty(expression.search(data)):
            continue
        text = message.evaluate(scope) if message is not None else None
        problems.append(Problem(path, str(text) if text not in (None, "") else
                                f"'{path}' is required to {'look up' if context.noun == 'lookup' else 'run'} "
                                f"{step.name}, but it is missing or empty"))
    return problems


# --------------------------------------------------------------------------- load-time checks

def mark_fallbacks(steps: dict) -> None:
    """A step that some rule runs is a fallback: it runs only when asked, not in the sequence."""
    targets = {rule.target for step in steps.values() for rule in step.rules() if rule.kind == RUN}
    for name in targets & set(steps):
        steps[name].fallback = True


def check_plan(steps: dict, sequence: list[str], where: tuple, report, reads: dict | None = None) -> None:
    """Report unknown targets, cycles of ``run`` rules, and reads of steps that may not have run.

    ``reads`` maps a step name to ((path, step read), ...): what its request, vars
    and body read of earlier answers. A step may read another only if that one has
    surely completed first: an earlier step of the sequence without ``when``, or
    the step whose rule ran this fallback (and what that one may read).
    """
    for name, step in steps.items():
        places: list[tuple[tuple, Rule]] = [(("on_status", key, RUN), rule) for key, rule in step.on_status.items()]
        places += [(("on_answer", i, "then", RUN), then) for i, (_, _, then) in enumerate(step.on_answer)]
        for place, rule in places:
            if rule.kind == RUN and rule.target not in steps:
                report(where + (name, *place), f"unknown step '{rule.target}' (declared: {', '.join(steps)})")
    edges = {name: [r.target for r in step.rules() if r.kind == RUN and r.target in steps]
             for name, step in steps.items()}
    for name in steps:
        cycle = _cycle_from(name, edges)
        if cycle and cycle[0] == name:
            report(where + (name, "on_status"), f"the steps run each other in a cycle: {' -> '.join(cycle)}")
            return
    if reads is None:
        return
    surely = _surely_before(steps, sequence, edges)
    for name, found in reads.items():
        for path, other in found:
            if other not in steps:
                report(path, f"'steps.{other}' names no step (declared: {', '.join(steps)})")
            elif other not in surely.get(name, set()):
                report(path, f"'steps.{other}' may not have run before step '{name}': read only steps that "
                             f"always run earlier (no 'when', not a fallback), or the step that ran this one")


def _cycle_from(start: str, edges: dict) -> list[str] | None:
    path, seen = [start], set()
    stack = [(start, iter(edges.get(start, ())))]
    while stack:
        _node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            path.pop()
            continue
        if child == start:
            return [*path, start]
        if child not in seen:
            seen.add(child)
            path.append(child)
            stack.append((child, iter(edges.get(child, ()))))
    return None


def _surely_before(steps: dict, sequence: list[str], edges: dict) -> dict[str, set]:
    """For each step, the steps sure to have completed before it starts."""
    surely: dict[str, set] = {}
    done: set = set()
    for name in sequence:
        surely[name] = set(done)
        if steps[name].when is None:
            done = done | {name}
    changed = True
    while changed:   # fallbacks: what every step that runs them surely has, plus that step
        changed = False
        for name, step in steps.items():
            if not step.fallback:
                continue
            askers = [a for a, targets in edges.items() if name in targets and a in surely]
            if not askers:
                continue
            known = set.intersection(*(surely[a] | {a} for a in askers))
            if surely.get(name) != known:
                surely[name], changed = known, True
    return surely


def step_reads(node, path: tuple, pattern=STEP_READ) -> list[tuple[tuple, str]]:
    """(path, step name) for every ``steps.NAME`` (``pattern``: or ``lookups.NAME``) a compiled value
    reads (paths, conditions, templates)."""
    found: list[tuple[tuple, str]] = []
    _walk(node, found, pattern)
    return [(getattr(n, "where", path) or path, name) for n, name in found]


def var_reads(nodes) -> set[str]:
    """The names of every ``vars.NAME`` these compiled values read."""
    found: list = []
    _walk(list(nodes), found, VAR_READ)
    return {name for _, name in found}


def _walk(value, found: list, pattern=STEP_READ) -> None:
    if isinstance(value, Node):
        for slot in _slots(type(value)):
            child = getattr(value, slot, None)
            texts = [child] if isinstance(child, str) else (
                [t for t in child if isinstance(t, str)] if slot == "sources" and isinstance(child, list) else [])
            for text in texts:
                found += [(value, m.group(1)) for m in pattern.finditer(text)]
            if not texts:
                _walk(child, found, pattern)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, found, pattern)


def _slots(cls) -> tuple[str, ...]:
    return slots_of(cls, ("where", "reads"))   # a Path's reads repeat its sources
