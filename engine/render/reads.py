"""What a compiled value reads: the scopes (``event``, ``settings``, ``body``...) and the vars it names.

Why: where a value comes from decides how a request may use it. A URL keeps the
operator's values (settings, vars made from settings alone) as written and escapes
the event's; a header that reads the event cannot go on a batch request; a header
that reads ``body`` is made after the body is encoded. Worked out once at load,
from the compiled nodes: each template's names (``template_facts``) and each
JMESPath read's root (``root_reads``), so a word inside a string literal is no read.
"""
from __future__ import annotations

import functools

from ..map.codegen import compile_expression
from ..map.language import Node, Template, root_reads, slots_of, template_facts

ANY_VAR = "*"   # a read of ``vars`` as a whole, or by a name worked out at run time: any var


class Reads:
    """The scope names a value reads (``vars`` among them when it reads a var) and the var names."""

    __slots__ = ("scopes", "vars")

    def __init__(self, scopes: set[str], vars: set[str]):
        self.scopes, self.vars = scopes, vars

    def operator_only(self, operator_vars) -> bool:
        """True when the value comes from settings alone, directly or through vars made from settings alone."""
        return self.scopes <= {"settings", "vars"} and self.vars <= set(operator_vars)


def reads_of(*nodes) -> Reads:
    found = Reads(set(), set())
    for node in nodes:
        _walk(node, found)
    return found


def template_reads(source: str) -> Reads:
    """What one template reads (``source`` must compile)."""
    facts = template_facts(source)
    return Reads(set(facts.scopes), set(facts.vars) or ({ANY_VAR} if "vars" in facts.scopes else set()))


def operator_vars(variables: list, known: frozenset = frozenset()) -> frozenset:
    """The names of ``variables`` ([(name, node)], in order) whose values come from settings alone."""
    names = set(known)
    for name, node in variables:
        if reads_of(node).operator_only(names):
            names.add(name)
        else:
            names.discard(name)   # a var of the same name redefined from the event
    return frozenset(names)


def _walk(value, found: Reads) -> None:
    if isinstance(value, Template):
        reads = template_reads(value.source)
        found.scopes |= reads.scopes
        found.vars |= reads.vars
    elif isinstance(value, Node):
        for slot in _slots(type(value)):
            _walk(getattr(value, slot, None), found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, found)
    elif hasattr(value, "parsed") and hasattr(value, "search"):   # a compiled JMESPath read
        scopes, names = _expression_reads(value.expression)
        found.scopes |= scopes
        found.vars |= names


@functools.lru_cache(maxsize=8192)
def _expression_reads(text: str) -> tuple[frozenset, frozenset]:
    """(scopes, var names) of one JMESPath read, worked out once per text (files repeat their reads)."""
    parsed = compile_expression(text).parsed
    scopes, names = frozenset(root_reads(parsed)), frozenset(_var_names(parsed))
    return scopes, names or (frozenset({ANY_VAR}) if "vars" in scopes else frozenset())


def _var_names(parsed: dict) -> list[str]:
    """``x`` for every ``vars.x`` in a JMESPath syntax tree."""
    names = []
    if parsed.get("type") == "subexpression":
        left, right = parsed["children"][0], parsed["children"][1]
        if left.get("type") == "field" and left.get("value") == "vars" and right.get("type") == "field":
            names.append(right["value"])
    for child in parsed.get("children", ()):
        if isinstance(child, dict):
            names += _var_names(child)
    return names


def _slots(cls) -> tuple[str, ...]:
    return slots_of(cls, ("where", "_code", "_render"))
