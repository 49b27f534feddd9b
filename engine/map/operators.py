"""What ``or``, ``and``, ``not``, a condition and ``~`` mean in a template, decided once on its syntax tree.

Why: Jinja2 gives these Python's meaning (``0`` is false, a null joins as
"None"), the language gives them its own (``0`` and ``false`` are values,
missing data is nothing). Rewriting the tree once, right after parsing, puts
the language's meaning into every way a template is run: Jinja2's constant
folding and its run time (map/language.compiled_template), the Python
translation (map/jinja_subset.py) and so explain, which runs the same code.

The rules (docs/language.md has the truth table):

* a **condition** (the test of ``{% if %}``, of ``x if c else y`` and of a
  ``for ... if``, the operand of ``not``, the left side of ``and``, and both
  sides of an ``or`` that is itself a condition) is true unless its value is
  null, missing, ``false``, ``""``, ``[]`` or ``{}`` (runtime.is_truthy, JMESPath's
  rule, as ``@if``); ``0`` is true;
* ``a or b`` is boolean logic (``a`` when it is true, else ``b``) when ``a`` is
  boolean by construction (a comparison, ``not``, a test such as ``is defined``,
  ``in``, an and/or of those; a literal ``false`` is a value, like ``false`` read
  from the event) or the ``or`` is a condition;
  otherwise it is the **fallback**: ``a`` unless it is empty (null, missing,
  ``""``, ``[]``, ``{}``; runtime.is_filled), so ``count or 1`` keeps a count of
  ``0`` and ``flag or true`` keeps ``false``;
* ``a and b`` is ``b`` when ``a`` is true, else ``a``; ``not a`` is true when
  ``a`` is not true;
* ``a ~ b`` joins the text of each side (filters.text_of): null and missing are "".

Operators whose deciding operand is boolean by construction stay Jinja2's own
nodes (Python's meaning is the same on true and false); the others become a
test or a filter below, registered under names no template can spell.
"""
from __future__ import annotations

from jinja2 import nodes

from .filters import text_of
from .runtime import is_filled, is_truthy

TRUTHY = "(truthy)"  # the condition rule
FILLED = "(filled)"  # the fallback rule
TEXT = "(text)"      # the text of a value, for ~
TESTS = {TRUTHY: is_truthy, FILLED: is_filled}
FILTERS = {TEXT: text_of}

_CONDITION_FIELDS = {nodes.If: "test", nodes.CondExpr: "test", nodes.For: "test"}


def rewrite(tree: nodes.Node) -> nodes.Node:
    """The tree with the language's operators in place of Jinja2's (changed in place, and returned)."""
    return _node(tree, condition=False)


def _node(node, condition: bool):
    if isinstance(node, nodes.Expr):
        return _expression(node, condition)
    _children(node, _CONDITION_FIELDS.get(type(node)))
    return node


def _children(node: nodes.Node, condition_field: str | None) -> None:
    """Rewrite every child of ``node``; the one named ``condition_field`` is a condition."""
    for name, value in node.iter_fields():
        if isinstance(value, list):
            setattr(node, name, [_node(item, False) if isinstance(item, nodes.Node) else item for item in value])
        elif isinstance(value, nodes.Node):
            setattr(node, name, _condition(value) if name == condition_field else _node(value, False))


def _condition(node) -> nodes.Expr:
    """``node`` as a condition: a boolean by construction as it is, anything else through the truthy rule."""
    node = _expression(node, True)
    return node if boolean(node) else _test(node, TRUTHY)


def _expression(node: nodes.Expr, condition: bool) -> nodes.Expr:
    if isinstance(node, nodes.Or):
        left = _expression(node.left, True) if condition else _expression(node.left, False)
        right = _expression(node.right, condition)
        if boolean(left):
            node.left, node.right = left, right
            return node
        # a || b (JMESPath's) in a condition; the fallback in a value
        return _if(_test(left, TRUTHY if condition else FILLED), left, right, node)
    if isinstance(node, nodes.And):
        left, right = _expression(node.left, True), _expression(node.right, condition)
        if boolean(left):
            node.left, node.right = left, right
            return node
        return _if(_test(left, TRUTHY), right, left, node)
    if isinstance(node, nodes.Not):
        node.node = _condition(node.node)
        return node
    if isinstance(node, nodes.Concat):
        node.nodes = [part if _text_constant(part) else _text(_expression(part, False)) for part in node.nodes]
        return node
    _children(node, _CONDITION_FIELDS.get(type(node)))
    return node


def boolean(node: nodes.Expr) -> bool:
    """True when the expression's value is true or false whatever the data (a comparison, a test...).

    A literal ``true``/``false`` is a value like the same value read from the event, so that a template
    folded from literals gives what it gives at run time: ``false or 'x'`` keeps false, as
    ``event.flag or 'x'`` does.
    """
    if isinstance(node, (nodes.Compare, nodes.Not, nodes.Test)):
        return True
    if isinstance(node, (nodes.And, nodes.Or)):
        return boolean(node.left) and boolean(node.right)
    if isinstance(node, nodes.CondExpr):
        return node.expr2 is not None and boolean(node.expr1) and boolean(node.expr2)
    return False


def _test(node: nodes.Expr, name: str) -> nodes.Test:
    return nodes.Test(node, name, [], [], None, None, lineno=node.lineno)


def _text(node: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, TEXT, [], [], None, None, lineno=node.lineno)


def _text_constant(node: nodes.Expr) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str)


def _if(test: nodes.Expr, then: nodes.Expr, otherwise: nodes.Expr, where: nodes.Node) -> nodes.CondExpr:
    return nodes.CondExpr(test, then, otherwise, lineno=where.lineno)
