"""JMESPath written as Python (engine/map/jmespath_subset.py) gives exactly what jmespath gives.

Hypothesis writes expressions (paths, indexes, slices, literals, comparisons, &&, ||, !,
functions, projections, filters, multi-selects, pipes) over JSON values chosen to hit
jmespath's corners (0 and 1 against false and true, 0 under !, text against numbers), and
each is evaluated by jmespath's interpreter and by the translation, both ways the engine
runs it: inside generated code (``@path``, ``@if``) and as a condition object (a step's
``when``). Values must agree in type too; failures must raise the same error with the same
words.
"""
from __future__ import annotations

import jmespath
import pytest
from conftest import typed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.map import codegen
from engine.map.codegen import compile_expression, scopes_condition
from engine.map.runtime import is_truthy

VALUES = [None, True, False, 0, 1, 2, -1, 1.0, 0.0, 2.5, "", "a", "ab", "1", "b", [], [0], [1], [True], ["a", "b"],
          [1, 2], [{"a": 1}, {"a": 0}, {"b": 2}], [[1], 2], [None, {"b": 1}], {}, {"a": 1}, {"a": 0, "b": [1, 2]}, {"b": "ab"}]
LITERALS = ["`0`", "`1`", "`2`", "`1.0`", "`0.0`", "`true`", "`false`", "`null`", "'a'", "''", "`[]`", "`{}`",
            "`[1]`", "`\"ab\"`", "`{\"a\": 1}`"]
FIELDS = ["a", "b", "c", "a.b", "a.a", "c[0]", "c[-1]", "c[1:]", "c[::-1]", "c[0].a", "a.b[0]"]


def leaf(prefix: str):
    return st.one_of(st.sampled_from([prefix + f for f in FIELDS]), st.sampled_from(LITERALS))


def compound(prefix: str):
    def build(inner):
        pair = st.tuples(inner, inner)
        return st.one_of(
            pair.map(lambda p: f"({p[0]} {'=='} {p[1]})"),
            st.tuples(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), inner, inner).map(
                lambda t: f"({t[1]} {t[0]} {t[2]})"),
            pair.map(lambda p: f"({p[0]} && {p[1]})"),
            pair.map(lambda p: f"({p[0]} || {p[1]})"),
            inner.map(lambda e: f"!({e})"),
            st.tuples(st.sampled_from(["type", "length", "to_string", "to_number", "keys", "values", "abs", "sum",
                                       "max", "reverse", "to_array", "not_null", "ceil"]), inner).map(
                lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["contains", "starts_with", "ends_with", "not_null", "join"]), inner, inner).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            pair.map(lambda p: f"[{p[0]}, {p[1]}]"),
            pair.map(lambda p: f"{{x: {p[0]}, y: {p[1]}}}"),
            inner.map(lambda e: f"({e}) | [0]"),
            inner.map(lambda e: f"({e})[0]"),
        )
    projections = st.sampled_from([f"{prefix}c[].a", f"{prefix}c[*].a", f"{prefix}c[]", f"{prefix}a.*",
                                   f"{prefix}c[?a == `1`]", f"{prefix}c[?a].a", f"{prefix}c[?!(a)]",
                                   f"{prefix}c[?@ > `0`]", f"{prefix}c[?type(@) == 'number']", f"{prefix}c[*].a.b",
                                   f"{prefix}a.*.b", f"{prefix}c[].a | [0]", f"{prefix}c[:1].a"])
    return st.recursive(st.one_of(leaf(prefix), projections), build, max_leaves=6)


def data():
    value = st.sampled_from(VALUES)
    return st.fixed_dictionaries({}, optional={"a": value, "b": value, "c": value})


def outcome(run):
    try:
        return "value", typed(run())
    except Exception as exc:  # jmespath's errors and Python's TypeError alike: compared as such
        return "error", type(exc).__name__, str(exc)


def generated(text: str):
    """The code map/codegen.py writes for an @path or @if reading ``text`` (and whether it was translated)."""
    writer = codegen.Writer(hoist=False)
    writer.lines.append("def run(event, settings, vars, item):")
    generator = codegen.Generator(writer)
    generator.read(compile_expression(text), codegen.Context("event", None), "out")
    writer.emit("return out")
    source = "\n".join(writer.lines) + "\n"
    return codegen.CompiledCode("run", source, writer.namespace, []).function, "jmespath_" not in source


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compound(""), data())
def test_a_condition_object_searches_as_jmespath_does(text, value):
    want = outcome(lambda value=value: jmespath.search(text, value))
    expression = compile_expression(text)
    assert outcome(lambda value=value: expression.search(value)) == want, text
    assert expression._run.__name__ == "search" and expression._run.__qualname__ == "search", "not translated"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compound("event."), data(), data())
def test_generated_code_reads_as_jmespath_does(text, event, settings_value):
    want = outcome(lambda: jmespath.search(text, {"event": event, "settings": settings_value, "vars": {}}))
    run, translated = generated(text)
    assert translated, text
    assert outcome(lambda: run(event, settings_value, {}, None)) == want, text


@pytest.mark.parametrize("text", ["event.traits.name", "sort_by(event.list, &a)", "length(event.a, event.b)",
                                  "no_such_function(event.a)", "@", "[0]"])
def test_what_the_subset_leaves_to_jmespath_still_answers_as_jmespath(text):
    expression = compile_expression(text)
    for value in ({"event": {"list": [{"a": 2}, {"a": 1}], "a": "x", "traits": {"name": "Ann"}}}, {}, {"event": 3}):
        assert outcome(lambda value=value: expression.search(value)) == outcome(lambda value=value: jmespath.search(text, value))


@pytest.mark.parametrize(("text", "translated"), [
    ("type(event.item) == 'string'", True), ("contains(settings.events, event.event)", True),
    ("length(vars.region || '') == `2`", True), ("vars.contents[].id", True),
    ("sort_by(event.list, &a)", False), ("length(event.a, event.b)", False),
])
def test_the_subset_is_what_the_docs_say(text, translated):
    assert generated(text)[1] is translated


MISSING = object()
# {a} and {b} are the operands read from the top: a and b, or event.a and event.b in generated code
OPERATORS = ([f"{{a}} {op} {{b}}" for op in ("==", "!=", "<", "<=", ">", ">=", "&&", "||")] + ["!{a}", "!({a})", "!!{a}"]
             + [f"{fn}({{a}})" for fn in ("type", "length", "to_string", "to_number", "keys", "values", "abs", "sum",
                                          "max", "min", "reverse", "to_array", "not_null", "ceil", "floor", "avg",
                                          "sort")]
             + [f"{fn}({{a}}, {{b}})" for fn in ("contains", "starts_with", "ends_with", "not_null", "join", "merge")]
             + ["{a}[0]", "{a}[1]", "{a}[-1]", "{a}[-2]", "{a}[1:]", "{a}[::-1]", "{a}[].b", "{a}[*].b", "{a}[]",
                "{a}.*", "{a}.*.b", "{a}[?b]", "{a}[?!b]", "{a}[?@ == `1`]", "{a}[?@ == `true`]", "[{a}, {b}]",
                "{{x: {a}, y: {b}}}", "{a} | [0]", "{a}.b", "{a} == `0`", "{a} == `1`", "{a} == `true`", "{a} == 'a'",
                "{a} != `1`", "{a} < `1`", "type({a}) == 'string'", "'number' == type({a})", "type({a}) != 'array'",
                "type({a}) == 'null'", "type({a}) == 'nonsense'", "type({a}) == 'boolean' && {b}", "{a} | [b]", "{a} | {{x: b}}", "{a}[*].[b]", "`false` == {a}", "length({a}) == `2`", "contains({a}, 'a')"])
PAIRS = [(a, b) for a in [MISSING, *VALUES] for b in [MISSING, *VALUES]]


@pytest.mark.parametrize("written", OPERATORS)
def test_every_operator_on_every_pair_of_values_answers_as_jmespath(written):
    """Each operator on every pair of the corner values, both ways the engine runs JMESPath."""
    text, in_event = written.format(a="a", b="b"), written.format(a="event.a", b="event.b")
    expression = compile_expression(text)
    run, translated = generated(in_event)
    assert translated, in_event
    for a, b in PAIRS:
        value = {k: v for k, v in (("a", a), ("b", b)) if v is not MISSING}
        assert outcome(lambda value=value: expression.search(value)) == outcome(lambda value=value: jmespath.search(text, value)), (text, value)
        want = outcome(lambda value=value: jmespath.search(in_event, {"event": value, "settings": {}, "vars": {}}))
        assert outcome(lambda value=value: run(value, {}, {}, None)) == want, (in_event, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compound("vars."), data(), data())
def test_a_steps_condition_holds_as_jmespath_says(text, variables, event):
    """A step's ``when`` reads the action's scopes as given (codegen.scopes_condition): true exactly when
    jmespath's value over those scopes is true to the language (null, false and empty are not; 0 is)."""
    scopes = {"event": event, "steps": {}, "vars": variables, "settings": {}}
    want = outcome(lambda: is_truthy(jmespath.search(text, scopes)))
    holds = scopes_condition(compile_expression(text), ("event", "steps", "vars", "settings"))
    assert outcome(lambda: holds(event, {}, variables, {})) == want, text
