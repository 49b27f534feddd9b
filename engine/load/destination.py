"""Load one destination file: parse, check against the schema, compile, lint."""
from __future__ import annotations

from pathlib import Path

from ..destination import Destination, Limits
from ..durations import parse_rate
from ..map.language import ACTION_SCOPES, ENVELOPE_SCOPES, Compiler, plain_steps, root_reads
from ..problems import Problem
from ..render.action import CALL_TYPES, Action, Batching, Envelope, Subscription
from ..render.endpoint import compile_endpoint, merge_request
from ..render.reads import operator_vars, reads_of
from ..steps import ahead, var_reads
from .required import compile_required
from .schema_check import check_for_compiling
from .settings import SettingsSpec
from .steps import compile_steps
from .yaml_source import YamlDocument, load_yaml


def load_destination(path: Path, display_name: str | None = None) -> tuple[Destination | None, list[Problem]]:
    doc, problems = load_yaml(path, display_name)
    if doc is None:
        return None, problems
    checked = check_for_compiling(doc, "mapping.schema.json")   # what the schema refuses is left out, the rest compiled
    problems += checked.problems
    if checked.document is None:
        return None, problems
    destination, compile_problems = compile_destination(checked.document, Path(path).stem)
    problems += checked.after(compile_problems)
    return (None if any(p.severity == "error" for p in problems) else destination), problems


def compile_destination(doc: YamlDocument, slug: str) -> tuple[Destination, list[Problem]]:
    data = doc.data
    settings = SettingsSpec(slug, data["settings"])
    setting_names = set(settings.properties)
    problems = [doc.problem(("settings", "required", i), f"required setting '{name}' is not declared in settings.properties")
                for i, name in enumerate(settings.required) if name not in settings.properties]
    defaults = (data.get("defaults") or {}).get("request")

    actions = {}
    for name, spec in data["actions"].items():
        # an action with steps also reads the answers of its earlier steps (steps.NAME.status, .body)
        compiler = Compiler(doc.problem, setting_names, ACTION_SCOPES | {"steps"} if "steps" in spec else ACTION_SCOPES)
        path = ("actions", name)
        call_type, subscription = _compile_subscription(name, spec, compiler, path, settings.properties)
        if call_type is None:  # a misspelt call type: one problem is enough
            problems += compiler.problems
            continue
        variables = _compile_vars(compiler, spec.get("vars"), path + ("vars",))
        required = compile_required(spec.get("required", []), compiler, path + ("required",),
                                    {name for name, _ in variables})
        if "steps" in spec:
            actions[name] = _steps_action(call_type, spec, compiler, path, defaults, variables, required, name,
                                          subscription)
            problems += compiler.problems
            continue
        if "body" not in spec:
            compiler.report(path, "an action needs 'body' (one request) or 'steps' (several)")
        body = compiler.value(spec.get("body"), path + ("body",))
        endpoint = compile_endpoint(merge_request(defaults, spec.get("request")), compiler, path + ("request",),
                                    operator_vars(variables))
        problems += compiler.problems
        own = None   # the destination's envelope; False: none; or the action's own
        if "envelope" in spec:
            own = _compile_envelope(spec["envelope"], doc, setting_names, path + ("envelope",), problems) or False
            if spec.get("batch") is True:
                problems.append(doc.problem(path + ("batch",), "an action with its own envelope (or none) is sent "
                                                               "alone, never in a batch: remove 'batch: true'"))
        actions[name] = Action(call_type, variables, body, required, endpoint,
                               spec.get("batch", True) and own is None, name, subscription, envelope=own)

    envelope = _compile_envelope(data.get("envelope"), doc, setting_names, ("envelope",), problems)
    batching = None
    if "batch" in data:
        spec = data["batch"]
        # defaults.request serves actions too, so it may read event. and the actions' vars: a batch has no one
        # event, so such a value makes the destination unbatchable (a warning at load, each event sent alone)
        compiler = Compiler(doc.problem, setting_names, ENVELOPE_SCOPES | {"event"})
        for action_spec in data["actions"].values():
            for var in action_spec.get("vars") or {}:
                compiler.define_var(var)
        endpoint = compile_endpoint(merge_request(defaults, spec.get("request")), compiler, ("batch", "request"))
        problems += compiler.problems
        batch_envelope = _compile_envelope(spec.get("envelope"), doc, setting_names, ("batch", "envelope"), problems)
        per_event = _per_event_values(endpoint, defaults or {}, spec.get("request") or {})
        problems += [doc.problem(where, f"'{shown}' reads {what}, which a batch request does not have (it carries "
                                        f"many events): {data['name']} sends each event as its own request, never "
                                        f"a batch. To batch, set batch.request.{shown} to a value from items, body "
                                        "or settings (null leaves a header out)", severity="warning")
                     for where, shown, what in per_event]
        batching = Batching(spec["max_events"], spec.get("max_bytes"), endpoint, batch_envelope,
                            "; ".join(f"{shown} reads {what}" for _, shown, what in per_event) or None)

    limits = _compile_limits(data.get("limits") or {}, doc, problems)
    destination = Destination(data["name"], slug, doc.file, data.get("description", ""), settings,
                              actions, envelope, batching, limits, data.get("integrations", "obey") == "obey")
    return destination, problems


def _per_event_values(endpoint, defaults: dict, own: dict) -> list[tuple[tuple, str, str]]:
    """(where it is written, its name under request, what it reads) for each value of a batch request that
    reads the event or an action's vars: values a batch of many events cannot have."""
    entries = [("url", endpoint.url), *((f"headers.{n}", node) for n, node in endpoint.headers),
               *((f"query.{n}", node) for n, node in endpoint.query),
               *((f"{part}.{n}", node) for part, n, node in endpoint.signed),
               *((("auth", node) for node in endpoint.auth[1]) if endpoint.auth else ()),
               *((("method", endpoint.method_node),) if endpoint.method_node else ())]
    found = []
    for shown, node in entries:
        reads = reads_of(node).scopes & {"event", "vars"}
        if not reads:
            continue
        keys = tuple(shown.split(".", 1))
        written = own if keys[0] in own and (len(keys) == 1 or keys[1] in (own[keys[0]] or {})) else defaults
        where = ("batch", "request", *keys) if written is own else ("defaults", "request", *keys)
        what = " and ".join({"event": "the event", "vars": "an action's vars"}[r] for r in sorted(reads))
        found.append((where, shown, what))
    return found


def _steps_action(call_type, spec, compiler, path, defaults, variables, required, name, subscription) -> Action:
    """An action of several named requests: its vars and required come first, then each step's own."""
    for key in ("body", "request", "envelope"):
        if key in spec:
            compiler.report(path + (key,), f"an action with steps has no '{key}' of its own: put it in a step"
                            if key != "envelope" else "an action with steps sends each step's body as it is: "
                                                      "it has no envelope")
    for i, rule in enumerate(required):
        if not rule.path.startswith("vars."):
            compiler.report(path + ("required", i), f"'{rule.path}': with steps, an action's required may only name "
                                                    "vars (put body fields in the step's own required)")
    steps = compile_steps(spec["steps"], compiler, path + ("steps",), defaults, operator=operator_vars(variables))
    for step_name, step in steps.items():  # each step as an action of its own, for its generated code
        body = step.body if step.body is not None else compiler.value(None, path + ("steps", step_name))
        needed = _vars_needed(variables, [node for _, node in step.vars] + [body, *step.endpoint.nodes()], required)
        step.action = Action(call_type, [v for v in variables if v[0] in needed] + step.vars, body,
                             required + step.required, step.endpoint, False,
                             f"{name}_{step_name}")
    first = next(iter(steps.values()))  # body and endpoint of the action itself: unused, its steps have their own
    action = Action(call_type, variables, compiler.value(None, path + ("steps",)), required, first.endpoint, False,
                    name, subscription, steps)
    action.ahead = ahead(steps, action.sequence)
    return action


def _vars_needed(variables: list, nodes: list, required: list) -> set[str]:
    """The action vars a step reads (and the vars those read, and what required names): a step's
    generated code computes only those, so Crisp's update does not build the data its last step sends."""
    needed = var_reads(nodes) | {rule.path[5:].split(".")[0] for rule in required if rule.path.startswith("vars.")}
    for name, node in reversed(variables):  # a var may read only those defined before it
        if name in needed:
            needed |= var_reads([node])
    return needed


def _compile_subscription(name: str, spec: dict, compiler: Compiler, path: tuple, settings: dict):
    """(call type, Subscription or None): a call type's own action takes all its events, a named one some."""
    if name in CALL_TYPES:
        if spec.get("type", name) != name:
            compiler.report(path + ("type",), f"the '{name}' action takes {name} calls; to take "
                                              f"{spec['type']} calls, give the action another name")
        for key in ("events", "when"):
            if key in spec:
                compiler.report(path + (key,), f"'{key}' chooses events for a named action; the '{name}' action "
                                               f"takes every {name} call: name this one (e.g. 'purchase: {{type: "
                                               f"{name}, {key}: ...}}') to take only some")
        return name, None
    if "type" not in spec and "events" not in spec and "when" not in spec:  # most likely a misspelt call type
        compiler.report(path, f"'{name}' is not a call type ({', '.join(CALL_TYPES)}); a named action "
                              "also needs 'type' and 'events' or 'when'")
        return None, None
    if "type" not in spec:
        compiler.report(path, f"the named action '{name}' needs 'type': the call type it takes "
                              f"({', '.join(CALL_TYPES)})")
    if "events" not in spec and "when" not in spec:
        compiler.report(path, f"the named action '{name}' needs 'events' (event names) or 'when' (a condition) "
                              "to say which events it takes")
    when = compiler.jmespath(spec["when"], path + ("when",), "when") if "when" in spec else None
    if when is not None and not set(root_reads(when.parsed)) <= {"event", "settings"}:
        compiler.report(path + ("when",), f"when {spec['when']!r}: a subscription reads the event and settings "
                                          "only (event.NAME, settings.NAME), not vars")
    call_type = spec.get("type", "track")
    written = spec.get("events")
    if isinstance(written, dict):   # {"@path": settings.NAME}: the names are that setting's list, per route
        setting = _events_setting(written, compiler, path + ("events",), settings)
        if setting is None:   # reported; the file does not load
            return call_type, Subscription(frozenset(), when, [], spec.get("when"), where=path)
        return call_type, Subscription(None, when, None, spec.get("when"), setting, path)
    events = frozenset(written) if written is not None else None
    return call_type, Subscription(events, when, written, spec.get("when"), where=path)


def _events_setting(written: dict, compiler: Compiler, path: tuple, settings: dict) -> str | None:
    """The setting a named action's ``events: {"@path": settings.NAME}`` reads (None: reported).

    One declared setting whose schema is a list of text, so that the route's settings, validated
    against it, always give event names: nothing about it can fail while events are rendered.
    """
    text = written.get("@path")
    expression = compiler.jmespath(text, path + ("@path",), "events") if isinstance(text, str) else None
    steps = plain_steps(expression.parsed) if expression is not None else None
    if isinstance(text, str) and expression is None:
        return None   # reported: not JMESPath, or an unknown scope or setting
    if steps is None or len(steps) != 2 or steps[0] != "settings":
        compiler.report(path, f"events {written!r}: a named action's events are a list of names, or one setting "
                              "that holds them: {\"@path\": settings.NAME}")
        return None
    if steps[1] not in settings:
        return None   # reported: an unknown setting
    declared = settings[steps[1]]
    items = declared.get("items") if isinstance(declared.get("items"), dict) else {}
    if declared.get("type") != "array" or items.get("type") != "string":
        compiler.report(path, f"events reads settings.{steps[1]}, which must be declared as a list of event names "
                              f"(type: array, items: {{type: string}}) so every route's value is one")
        return None
    return steps[1]


def _compile_limits(spec: dict, doc, problems: list) -> Limits:
    rate = None
    if "rate" in spec:
        try:
            rate = parse_rate(spec["rate"])
        except ValueError as exc:
            problems.append(doc.problem(("limits", "rate"), str(exc)))
    # batch: false: each event is its own request unless a routes file turns batching on (a webhook's receiver
    # may expect one event per request)
    return Limits(spec.get("concurrency", Limits.concurrency), rate, spec.get("batch", True))


def _compile_vars(compiler: Compiler, spec, path) -> list:
    compiled = []
    for name, raw in (spec or {}).items():
        compiled.append((name, compiler.value(raw, path + (name,))))
        compiler.define_var(name)  # later vars and the body may read it
    return compiled


def _compile_envelope(spec, doc, setting_names, path, problems) -> Envelope | None:
    if spec is None or spec is False:
        return None
    compiler = Compiler(doc.problem, setting_names, ENVELOPE_SCOPES)
    variables = _compile_vars(compiler, spec.get("vars"), path + ("vars",))
    body = compiler.value(spec["body"], path + ("body",))
    problems += compiler.problems
    return Envelope(variables, body)
