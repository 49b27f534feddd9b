"""The required fields' check as generated code (render/compiled.required_function) finds missing exactly
the fields the rules themselves (render/action.Required.missing, the interpreter's) find missing.

Hypothesis writes rules (a body path, a var, "one of" with ||, a path JMESPath must read) and payloads
and vars whose values cover the emptiness rule's corners (null, "", [], {}, false, 0)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.render.action import Required
from engine.render.compiled import RequiredCheck, required_function

VALUES = [None, "", [], {}, False, 0, "x", [1], {"a": 1}]
PATHS = ["a", "a.b", "b", "a.b.c", "vars.x", "vars.y", "vars.x || vars.y", "a || b", "a.b || vars.x",
         "vars.x.b", "a[0]", "items[0].id || a", "\"$set\".a", "vars.x || a", "vars.y || b.a"]


def values(depth: int = 2):
    leaf = st.sampled_from(VALUES)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.dictionaries(st.sampled_from(["a", "b", "c", "x", "y", "$set", "items"]),
                                           values(depth - 1), max_size=3),
                     st.lists(values(depth - 1), max_size=2))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PATHS), min_size=1, max_size=5), values(), st.dictionaries(
    st.sampled_from(["x", "y"]), values(), max_size=2))
def test_the_generated_check_finds_what_the_rules_find(paths, payload, variables):
    rules = [Required(path) for path in paths]
    found = required_function([RequiredCheck(rule) for rule in rules])(payload, variables) or []
    assert found == [i for i, rule in enumerate(rules) if rule.missing(payload, variables)], (paths, payload)
