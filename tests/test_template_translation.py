"""Templates written as Python (engine/map/jinja_subset.py) give exactly what Jinja2 gives.

Hypothesis writes templates from every construct the translation covers (comparisons,
``in``, arithmetic, and/or/not, conditions, ``~``, ``length`` and the language's filters,
tests, indexes and slices, list, tuple and object literals, methods of text) over values
chosen to hit the corners (missing data, null, 0 and false, text against numbers, lists
and objects where text is expected), and each is evaluated by Jinja2 itself
(``Template.run``) and by the generated code (``Node.evaluate``, which explain and render
run), as a whole value and inside text. They must agree on the value and its type, or
fail with the same message. Data the translation leaves to Jinja2 (it "bails") is part of
the comparison: those events must still agree.
"""
from __future__ import annotations

import json

import pytest
from conftest import typed
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jinja2 import nodes

from engine.map import codegen
from engine.map import templates as jinja_templates
from engine.map.jinja_subset import Translator
from engine.map.language import Compiler, MappingError, Scope, Template

# Jinja2 compiles generated templates such as none[0] into Python, which warns about them: noise here
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::hypothesis.errors.HypothesisWarning")

MISSING = object()
VALUES = [MISSING, None, True, False, 0, 1, 2, -1, 1.5, 0.0, "", "a", "ab", "AB1", " x ", "ab-cd", "1", "é",
          "2024-01-02T03:04:05Z", "items", [], [1, "a"], ["a", None], {}, {"a": 1, "k": "v"}, {"items": 3}]
ATOMS = ["event.a", "event.b", "event.c", "event.c.k", "event.c.items", "event.c.values", "1", "0", "2.5", "-1", "'a'", "''", "'ab-cd'", "none", "true",
         "false", "[1, 'a']", "{'k': 1}", "('a', 'x')"]
BINARY = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "//", "%", "and", "or", "~"]
UNARY = ["(not {})", "({} | length)", "({} | string)", "({} | lower)", "({} | trim)", "({} | try('epoch_s'))",
         "({} is defined)", "({} is string)", "({} is number)", "({} is none)", "({} is mapping)", "({} is sequence)",
         "{}[0]", "{}[-1]", "{}[2]", "{}[-3]", "{}['k']", "{}['items']", "{}[1:]", "{}[:2]", "{}.isascii()", "{}.isalpha()", "{}.strip()",
         "{}.split('-')", "{}.startswith(('a', 'x'))", "{}.lstrip('a')", "{}.upper()", "[{}]", "{{'k': {}}}",
         "({},)", "({} if event.a)", "({} | select('string') | join(','))", "({} | reject('in', 'ab') | join)",
         "({} | map('length') | first)", "({} | select('gt', 1) | first)", "({} | select | join('-'))",
         "({} | first)", "({}.items() | first)", "({}.values() | join(','))", "({}.keys() | first)",
         "{}.replace('a', 'bb')", "({} | map('lower') | join)", "({} | reject('number') | first)",
         "({} | reject('in', ' -.é') | join)", "({} | select('in', '0123456789') | join(''))",
         "({} | string | select('in', 'ab') | join)", "({} | select('string') | map('length') | select('gt', 1) | first)",
         "({} | reject('none') | map('string') | first)", "({} | round)", "({} | round(1, 'floor'))", "({} | int)",
         "({} | float)", "({} | abs)", "({} | capitalize)", "({} | title)", "({} | upper)", "({} | sum)", "({} | max)",
         "({} | round | int)"]
PAIRED = ["({} if {} else {})", "{}[{}]", "{{{}: {}}}", "({} | default({}))", "[{}, {}]", "{}.startswith({})",
          "{}[:{}]"]


def templates():
    atoms = st.sampled_from(ATOMS)

    def build(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(UNARY), inner).map(lambda t: t[0].format(t[1])),
            st.tuples(st.sampled_from(PAIRED), inner, inner, inner).map(
                lambda t: t[0].format(*t[1:t[0].count("{}") + 1])),
        )
    return st.recursive(atoms, build, max_leaves=4)


def event_of(values) -> dict:
    return {key: value for key, value in zip("abc", values) if value is not MISSING}


def outcome(run):
    try:
        return "value", typed(run())
    except MappingError as exc:
        return "error", exc.message
    except Exception as exc:  # a template Jinja2 itself cannot compile: the same failure both ways
        return "failed", type(exc).__name__, str(exc)


def compiled(source: str) -> Template | None:
    compiler = Compiler(lambda path, message: message, set())
    node = compiler.value(source, ("t",))
    return node if isinstance(node, Template) and not compiler.problems else None


def both_ways(source: str, event: dict) -> tuple[tuple, tuple, str]:
    """(Jinja2's answer, the generated code's answer, the generated code)."""
    node = compiled(source)
    assume(node is not None)
    assert node is not None
    jinja2 = outcome(lambda: node.run({"event": event}))
    translated = outcome(lambda: node.evaluate(Scope(event, {}, {})))
    return jinja2, translated, evaluator_source(node)


def evaluator_source(node: Template) -> str:
    """The code ``codegen.evaluator`` runs for ``node`` (what Node.evaluate calls)."""
    writer = codegen.Writer(hoist=False)
    writer.lines.append("def evaluate(event, settings, vars, item):")
    generator = codegen.Generator(writer)
    writer.emit(f"return {generator.value(node, codegen.Context('event', None))}")
    return "\n".join(writer.lines)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(templates(), st.lists(st.sampled_from(VALUES), min_size=3, max_size=3))
def test_a_translated_template_answers_as_jinja2_does(expression, values):
    event = event_of(values)
    for source in ("{{ " + expression + " }}", "<{{ " + expression + " }}>"):
        jinja2, translated, code = both_ways(source, event)
        assert translated == jinja2, (source, event, code)


STATEMENTS = [
    "{{% if {0} %}}a{{{{ {1} }}}}{{% elif {2} %}}b{{% else %}}c{{% endif %}}",
    "{{% for x in {0} if x %}}[{{{{ x }}}}]{{% else %}}none{{% endfor %}}",
    "{{% for x in {0} %}}{{{{ x ~ {1} }}}}{{% for y in {2} %}}{{{{ x == y }}}}{{% endfor %}}{{% endfor %}}",
    "{{% for k, v in ({0} or {{}}).items() if not (k.isascii() and v is string and v | length > 1) %}}{{% else %}}ok"
    "{{% endfor %}}",
    "{{% if {0} %}}{{% for x in {1} %}}{{{{ x }}}}{{% endfor %}}{{% endif %}}<{{{{ {2} }}}}>",
]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(STATEMENTS), st.lists(templates(), min_size=3, max_size=3),
       st.lists(st.sampled_from(VALUES), min_size=3, max_size=3))
def test_a_translated_template_with_if_and_for_answers_as_jinja2_does(statement, expressions, values):
    source = statement.format(*expressions)
    jinja2, translated, code = both_ways(source, event_of(values))
    assert translated == jinja2, (source, event_of(values), code)


@pytest.mark.parametrize("source", [
    "{{ true if (event.userId or '') | string | length <= 150 }}",
    "{{ true if (event.a or '') | length <= 1 and (event.b or '') | length <= 2 }}",
    "{% if (vars.p or {}) | length <= 24 %}{% for key, value in (vars.p or {}).items() if not (key.isascii() and "
    "key[:1].isalpha() and key | length <= 40 and key.replace('_', 'a').isalnum() and not key.startswith(('ga_', "
    "'google_')) and not (value is string and value | length > 100)) %}{% else %}ok{% endfor %}{% endif %}",
    "{{ (event.a | string | select('in', '0123456789') | join).lstrip('0') }}",
    "{{ event.a | string | lower | reject('in', ' .-') | join }}",
    "{{ event.price * (event.quantity or 1) }}",
    "{{ none if event.a and not (event.a | length == 3 and event.a.isascii() and event.a.isalpha()) else true }}",
    "{{ (settings.channels or {})[event.event] or settings.channel }}",
    "{{ event.a[:5] if event.b == 'us' else event.a }}",
    "{{ event.a.split('fbclid=')[1].split('&')[0] }}",
    "{{ {settings.key: [event.a]} }}",
    "{{ event.a is string and event.a | length > 100 }}",
])
def test_the_templates_the_shipped_destinations_use_are_translated(source):
    compiler = Compiler(lambda path, message: message, {"channels", "channel", "key"})
    compiler.define_var("p")
    node = compiler.value(source, ("t",))
    assert isinstance(node, Template) and not compiler.problems
    assert "except FilterError" in evaluator_source(node), "left to Jinja2"


EVENTS = [{"a": a, "b": b, "userId": u, "price": p, "quantity": q, "event": e}
          for a in ("abc", "ABé", "", None, 5, ["x"], "items", "a", "O'Brien-Smith Jr.", " +44 (0)20 7946-0958",
                    "2024-01-02T03:04:05.678Z", " 2024-01-02 ", "2024-13-02")
          for b in ("us", 2, None, 1, -3) for u in ("u1", 7, None, "x" * 151)
          for p, q in ((2.5, 2), (3, None), (None, 1), ("4", 2)) for e in ("Signed Up", "items", 3)]


@pytest.mark.parametrize("source", [
    "{{ true if (event.userId or '') | string | length <= 150 }}",
    "{{ event.price * (event.quantity or 1) }}",
    "{{ none if event.a and not (event.a | length == 3 and event.a.isascii() and event.a.isalpha()) else true }}",
    "{{ ({'Signed Up': '#a', 'items': '#b'})[event.event] or 'none' }}",
    "{{ event.a[:2] if event.b == 'us' else event.a }}",
    "<{{ event.a.split('b')[0] }}>",
    "{{ {event.a: [event.b]} }}",
    "{{ event.a not in ['abc', 'x'] and event.b in [2, 'us'] }}",
    "{{ event.a | string | lower | reject('in', ' \t\r\n!\"#$%&\\'()*+,-./:;<=>?@[\\\\]^_`{|}~') | join }}",
    "{{ (event.a | string | select('in', '0123456789') | join).lstrip('0') }}",
    "{{ event.a | reject('in', ' .-') | join }}", "{{ event.a | select('in', 'abc') | join('') }}",
    "{{ event.a | try('epoch_s') }}", "<{{ event.a | try('date') }}>", "{{ event.b | try('epoch_ms') }}",
    "{{ ({'a': 1, 'abc': 2})[event.a] }}", "{{ ({'a': 1})[event.e] }}", "{{ [1, 2][event.b] }}",
    "{{ ({'k': event.a} | string) }}", "{{ ({'k': [event.a]} | json) }}", "{{ [event.a, event.b] > [1] }}",
    "{{ event.a[1:] }}", "{{ event.e[:2] }}", "{{ 'a-b'.startswith((event.a, 'x')) }}",
    # without else, Jinja2's value is a plain Undefined: it does not chain, and equals only its own kind
    "{{ (event.a if event.b == 'us')[0] }}", "{{ ((event.a if event.b == 'us') and 'x').k }}",
    "{{ ((event.a if event.b == 'us') or 'z') }}", "{{ (event.a if event.b == 'us') == event.zz }}",
    "<{{ event.a if event.b == 'us' }}>", "{{ [event.a if event.b == 'us'] | join(',') }}",
    "{{ ((event.b != 2) and (event.a if event.b == 'us'))[0] }}",
    "{{ ((event.a if event.b == 'us') if event.b != 2 else 'q')[0] }}",
])
def test_the_shipped_constructs_answer_as_jinja2_on_every_event(source):
    node = compiled(source)
    assert node is not None
    for event in EVENTS:
        event = {k: v for k, v in event.items() if v is not None}
        assert outcome(lambda e=event: node.evaluate(Scope(e, {}, {}))) == outcome(lambda e=event: node.run({"event": e})), \
            (source, json.dumps(event))


def shared(source: str) -> nodes.Template:
    """``source``'s tree with its second output made the very node its first output reads as the value of
    its condition (as operators.rewrite repeats a subtree): a value computed once may stand for both only
    where it is sure to have been computed."""
    tree = jinja_templates.syntax_tree(source)
    first = tree.body[0].nodes[0]
    tree.body[0].nodes[2] = first.expr1 if isinstance(first, nodes.CondExpr) else nodes.Filter(
        first.node, "join", [nodes.Const(",")], [], None, None, lineno=1)  # the same select, joined again
    return tree


@pytest.mark.parametrize(("source", "event"), [
    # read in a branch not taken: read again after it
    ("{{ event.a if event.b else 'no' }}|{{ 0 }}", {"a": "x", "b": False}),
    ("{{ event.a if event.b else 'no' }}|{{ 0 }}", {"a": "x", "b": True}),
    # the same select twice: each consumer iterates its own items
    ("{{ (event.a | select('string') | join(',')) }}|{{ 0 }}", {"a": ["x", "y", 1]}),
])
def test_a_repeated_subtree_is_computed_again_where_it_must_be(source, event):
    tree = shared(source)
    jinja2 = "".join(jinja_templates.environment().from_string(tree).generate({"event": event}))
    writer = codegen.Writer(hoist=False)
    writer.lines.append("def evaluate(event, settings, vars, item):")
    translator = Translator(writer, jinja_templates.environment(), lambda name: name, can_bail=True)
    writer.emit(f"return {translator.text(tree)}")
    run = codegen.CompiledCode("evaluate", "\n".join(writer.lines) + "\n", writer.namespace, []).function
    assert run(event, {}, {}, None) == jinja2
