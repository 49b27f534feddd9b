"""Which expression made each output field, and its value: ``eventmap explain`` and the console's
mapping tester read the same explanation, so both show the same thing."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .engine import Engine
from .map.language import MappingError, Scope, output_fields
from .outcome import SEND, Outcome
from .route import Route
from .secrets import Masker, masked_twin


@dataclass(frozen=True)
class Field:
    """One output field: where it goes (``vars.x`` or a body path), how it is made, and its value (masked)."""

    path: str
    expression: str
    value: object          # None: left out, no value
    error: str | None = None


@dataclass
class Explanation:
    outcome: Outcome
    fields: list[Field] = field(default_factory=list)   # empty unless the outcome is sent
    chosen: str | None = None   # the named action its subscription chose ("purchase (events 'Order Completed')")

    def lines(self) -> list[str]:
        """The text ``eventmap explain`` prints: two lines per field, after the named action chosen, if one was."""
        if not self.fields:
            return []
        width = max(len(f.path) for f in self.fields)
        out = [f"action {self.chosen}"] if self.chosen else []
        for f in self.fields:
            out += [f"{f.path:<{width}}  {f.expression}", f"{'':<{width}}  = {shown(f)}"]
        return out


def shown(item: Field) -> str:
    """A field's value as JSON text, or why there is none."""
    if item.error is not None:
        return json.dumps(f"<error: {item.error}>", ensure_ascii=False)
    return json.dumps(item.value, ensure_ascii=False) if item.value is not None else "(left out: no value)"


def explain(engine: Engine, route: Route, event, responses=None) -> Explanation:
    """Render ``event`` for ``route`` and, when it is sent, show each field it sends and how it was made.

    The values are the mapped body itself, made by the same generated code render runs (the action bound to
    the route), split into fields along the mapping: what render leaves out (``@omit``, null values) is not
    shown, and each key ``@merge`` brought is shown with it. Each value is also made with sentinels in place
    of the secret settings: what differs was built from a secret and is masked (secrets.masked_twin), and
    nothing else is touched.
    """
    outcome = engine.render(event, route, responses=responses)
    if outcome.status != SEND:
        return Explanation(outcome)
    destination = route.destination
    action = destination.action_for(event, route.settings)
    values = mapped_fields(destination, action, event, route.settings)
    twin_settings, sentinels = destination.sentinel_settings(route.settings)
    try:
        twins = {path: value for path, _, value, _ in mapped_fields(destination, action, event, twin_settings)} \
            if sentinels else None
    except MappingError:  # a sentinel a filter cannot take: search for the secrets' text instead
        twins = None
    mask = Masker(route.secrets)
    fields = []
    for path, how, value, error in values:
        if error is not None:
            fields.append(Field(path, how, None, mask.text(error)))
        elif not sentinels:
            fields.append(Field(path, how, value))
        elif twins is not None and path in twins:
            fields.append(Field(path, how, masked_twin(value, twins[path], sentinels)))
        else:
            fields.append(Field(path, how, mask.data(value)))
    chosen = f"{action.name} ({action.subscription.describe()})" if action.subscription is not None else None
    return Explanation(outcome, fields, chosen)


def mapped_fields(destination, action, event: dict, settings: dict) -> list[tuple[str, str, object, str | None]]:
    """(path, expression, value, error) for each var and each field of the body, unmasked."""
    if action.steps is None:
        bound = action.bound(settings, destination.envelope, destination.name)
        if bound is not None:
            body, vars = bound.payload(event)   # exactly what render maps
        else:  # a settings-only value fails: the same code, node by node (render rejects such an event)
            body, scope = action.payload(event, settings)
            vars = scope.vars
        return [(f"vars.{name}", node.describe(), vars.get(name), None) for name, node in action.vars] + \
            [(_shown_path(path), how, value, None) for path, how, value in output_fields(action.body, body)]
    # an action with steps: each step's vars and body, named steps.NAME...; answers are not known here,
    # so a read of an earlier step shows as empty
    scope = Scope(event, settings, {})
    values: list[tuple[str, str, object, str | None]] = []
    for name, node in action.vars:
        scope.set_var(name, node.evaluate(scope))
        values.append((f"vars.{name}", node.describe(), scope.vars[name], None))
    for step_name, step in action.steps.items():
        prefix = f"steps.{step_name}."
        step_scope = Scope({**event, "steps": {}}, settings, dict(scope.vars))
        for name, node in step.vars:
            step_scope.set_var(name, node.evaluate(step_scope))
            values.append((f"{prefix}vars.{name}", node.describe(), step_scope.vars[name], None))
        if step.body is None:
            continue
        try:
            body = step.body.evaluate(step_scope)
        except MappingError as exc:
            values.append((prefix + "(body)", step.body.describe(), None, exc.message))
            continue
        values += [(prefix + _shown_path(path), how, value, None) for path, how, value in output_fields(step.body, body)]
    return values


def _shown_path(path: tuple) -> str:
    return ".".join(map(str, path)) or "(body)"
