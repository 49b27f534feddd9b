"""Compile ``required`` lists (an action's, a step's): field paths that must not be empty, and their messages.

One place for both, so a step's required accepts what an action's does: ``a || b`` for
"one of", keys such as ``$set`` written plainly, and messages that are templates.
"""
from __future__ import annotations

import json
import re

import jmespath
from jmespath.exceptions import JMESPathError

from ..map.language import Compiler, nested_or
from ..map.reads import negation_problem
from ..render.action import Required

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SYNTAX = set("[]{}()'\"`*@&!<>=,| \t")   # characters a plain key of a dotted path cannot hold


def compile_required(entries, compiler: Compiler, path: tuple, var_names: set[str] | None = None) -> list[Required]:
    """The rules of one ``required`` list; problems go to ``compiler``.

    ``var_names``: the vars a ``vars.NAME`` entry may name (an action's); None checks none (a step's own
    required names fields of its body).
    """
    rules = []
    for i, entry in enumerate(entries):
        field, message = (entry, None) if isinstance(entry, str) else (entry["path"], entry.get("message"))
        here = path + (i,)
        unknown = [alternative for alternative in (part.strip() for part in field.split("||"))
                   if var_names is not None and alternative.startswith("vars.")
                   and alternative[5:].split(".")[0] not in var_names]
        if unknown:
            compiler.report(here, f"'{unknown[0]}' names a variable this action does not define")
            continue
        reads_vars = {part.strip().startswith("vars.") for part in field.split("||")}
        if len(reads_vars) > 1:
            compiler.report(here, f"'{field}' mixes vars and fields of the body: one entry checks one or the "
                                  "other (make the body field a var, or the var a body field)")
            continue
        expression = field_expression(field)
        try:
            parsed = jmespath.compile(expression).parsed
        except JMESPathError as exc:
            compiler.report(here, f"'{field}' is not a valid field path: {str(exc).splitlines()[0]}")
            continue
        negation = negation_problem(field, parsed)
        if negation:
            compiler.report(here, negation)
            continue
        rule = Required(field, compiler.value(message, here + ("message",)) if message is not None else None,
                        expression)
        if any(nested_or(alternative.parsed) for alternative in rule.alternatives):
            compiler.report(here, f"'{field}': '||' inside an expression would skip false; "
                                  "write 'a || b' at the top level for one of several fields")
            continue
        rules.append(rule)
    return rules


def field_expression(field: str) -> str:
    """``field`` as JMESPath: as written when it compiles, else with each dotted key that is not a plain
    name quoted (``properties.$set`` is ``properties."$set"``), so keys as vendors spell them just work."""
    try:
        jmespath.compile(field)
        return field
    except JMESPathError:
        pass
    alternatives = []
    for alternative in field.split("||"):
        keys = alternative.strip().split(".")
        if any(not key or SYNTAX & set(key) for key in keys):
            return field   # not a dotted path of keys: JMESPath's own error says what is wrong
        alternatives.append(".".join(key if IDENTIFIER.fullmatch(key) else json.dumps(key) for key in keys))
    return " || ".join(alternatives)
