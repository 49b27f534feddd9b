"""Which expression made each output field, and its value: ``eventmap explain`` and the console's
mapping tester read the same explanation, so both show the same thing."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .engine import Engine
from .map.language import MappingError, Scope, leaves
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
    """Render ``event`` for ``route`` and, when it is sent, evaluate each field of its action on its own.

    Each value is also evaluated with sentinels in place of the secret settings: what differs was built
    from a secret and is masked (secrets.masked_twin), and nothing else is touched.
    """
    outcome = engine.render(event, route, responses=responses)
    if outcome.status != SEND:
        return Explanation(outcome)
    action = route.destination.action_for(event)
    values = evaluated(action, event, route.settings)
    twin_settings, sentinels = route.destination.sentinel_settings(route.settings)
    try:
        twins = evaluated(action, event, twin_settings) if sentinels else values
    except MappingError:  # a sentinel a filter cannot take: search for the secrets' text instead
        twins = None
    mask = Masker(route.secrets)
    fields = []
    for index, (path, how, value, error) in enumerate(values):
        if error is not None:
            fields.append(Field(path, how, None, mask.text(error)))
            continue
        fields.append(Field(path, how, masked_twin(value, twins[index][2], sentinels) if twins else mask.data(value)))
    chosen = f"{action.name} ({action.subscription.describe()})" if action.subscription is not None else None
    return Explanation(outcome, fields, chosen)


def evaluated(action, event: dict, settings: dict) -> list[tuple[str, str, object, str | None]]:
    """(path, expression, value, error) for each var and each leaf of the body, unmasked."""
    scope = Scope(event, settings, {})
    values: list[tuple[str, str, object, str | None]] = []
    for name, node in action.vars:
        scope.set_var(name, node.evaluate(scope))
        values.append((f"vars.{name}", node.describe(), scope.vars[name], None))
    # an action with steps: each step's vars and body, named steps.NAME...; answers are not known here,
    # so a read of an earlier step shows as empty
    bodies = [("", action.body, [])] if action.steps is None else [
        (f"steps.{name}.", step.body, step.vars) for name, step in action.steps.items()]
    for prefix, body, step_vars in bodies:
        step_scope = Scope({**event, "steps": {}}, settings, dict(scope.vars)) if prefix else scope
        for name, node in step_vars:
            step_scope.set_var(name, node.evaluate(step_scope))
            values.append((f"{prefix}vars.{name}", node.describe(), step_scope.vars[name], None))
        for path, node in leaves(body) if body is not None else ():
            where = prefix + (".".join(map(str, path)) or "(body)")
            try:
                values.append((where, node.describe(), node.evaluate(step_scope), None))
            except MappingError as exc:
                values.append((where, node.describe(), None, exc.message))
    return values
