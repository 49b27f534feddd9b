"""Which expression made each output field, and its value: ``eventmap explain`` and the console's
mapping tester read the same explanation, so both show the same thing."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .engine import Engine
from .map.language import MappingError, Scope, leaves
from .outcome import SEND, Outcome
from .route import Route
from .secrets import Masker


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

    def lines(self) -> list[str]:
        """The text ``eventmap explain`` prints: two lines per field."""
        if not self.fields:
            return []
        width = max(len(f.path) for f in self.fields)
        out = []
        for f in self.fields:
            out += [f"{f.path:<{width}}  {f.expression}", f"{'':<{width}}  = {shown(f)}"]
        return out


def shown(item: Field) -> str:
    """A field's value as JSON text, or why there is none."""
    if item.error is not None:
        return json.dumps(f"<error: {item.error}>", ensure_ascii=False)
    return json.dumps(item.value, ensure_ascii=False) if item.value is not None else "(left out: no value)"


def explain(engine: Engine, route: Route, event) -> Explanation:
    """Render ``event`` for ``route`` and, when it is sent, evaluate each field of its action on its own."""
    outcome = engine.render(event, route)
    if outcome.status != SEND:
        return Explanation(outcome)
    action = route.destination.actions[event["type"]]
    scope = Scope(event, route.settings, {})
    mask = Masker(route.secrets)
    fields = []
    for name, node in action.vars:
        scope.set_var(name, node.evaluate(scope))
        fields.append(Field(f"vars.{name}", node.describe(), mask.data(scope.vars[name])))
    for path, node in leaves(action.body):
        try:
            fields.append(Field(".".join(map(str, path)) or "(body)", node.describe(), mask.data(node.evaluate(scope))))
        except MappingError as exc:
            fields.append(Field(".".join(map(str, path)) or "(body)", node.describe(), None, mask.text(exc.message)))
    return Explanation(outcome, fields)
