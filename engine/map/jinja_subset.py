"""Translate the simplest Jinja2 templates into Python statements.

Why: rendering a template through Jinja2 costs several microseconds (a new
context per call). Most mapping templates are reads, filters, comparisons and
conditions, such as ``"{{ settings.base_url }}/v1/{{ type }}"`` or
``"{{ true if (event.userId or '') | length <= 150 }}"``; those become plain
Python here. Anything outside the subset raises :class:`Unsupported` and the
caller keeps Jinja2 for it, so the subset only has to be right, not complete.

The subset keeps Jinja2's semantics exactly, on the same tree (map/operators.py
has already put the language's ``or``, ``and``, ``not`` and ``~`` into it): a
missing value is Undefined (``_U`` in generated code), which reads as "" in text
and null in a whole expression; ``a.b`` and ``a[b]`` read a dict key; filters and
tests are the same callables Jinja2 would call, and operators the same Python
operators its compiled code uses; text and whole values go through the same
filters.text_of and runtime.json_data.

Where an operation's answer depends on data the translation does not decide
itself (arithmetic or an ordering on missing data, an index into something
that is not a list or object, a method of something that is not text), the
generated code *bails*: it raises :class:`Bail` and the caller renders that
event's value with Jinja2 itself, which then answers (or fails) as it always
does. A template that uses a user's filter never bails (the filter would run
twice): such a template is translated only when it cannot need to.
"""
from __future__ import annotations

import contextlib
import math

from jinja2 import nodes
from jinja2.utils import _PassArg

from ..problems import EventmapError
from . import operators
from .filters import BUILTIN_FILTERS, FILTERS, MAX_SIZE, refuse_over, tried
from .runtime import UNDEFINED
from .templates import check_size

# Attribute names some JSON value has as a Python attribute (dict.items, str.upper...):
# Jinja2 would return the method, so such reads stay with Jinja2.
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))
_SPECIAL_NAMES = {"self", "loop", "caller", "varargs", "kwargs", "super"}
_DICT_ATTRIBUTES = frozenset(dir(dict))  # what the sandbox's getitem finds on a dict when the key is not there
# Python's operator for each Jinja2 comparison and arithmetic node (what Jinja2's compiled code writes)
_COMPARISONS = {"eq": "==", "ne": "!=", "lt": "<", "lteq": "<=", "gt": ">", "gteq": ">=", "in": "in",
                "notin": "not in"}
_ARITHMETIC = {nodes.Add: "+", nodes.Sub: "-", nodes.Mul: "*", nodes.Div: "/", nodes.FloorDiv: "//", nodes.Mod: "%"}
_NUMBERS = (int, float)
# Jinja2's tests that only ask what kind of value it is: never an error, Undefined included
_KIND_TESTS = frozenset({"defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number",
                         "string", "mapping", "sequence", "iterable"})
# Jinja2's own filters of one value that the translation calls directly, as Jinja2's compiled code does: each
# takes its arguments as given (or the environment first) and answers a number or text, never a generator
# (the language's own lower, upper and trim are in FILTERS, and translated as the language's filters are)
_PLAIN_FILTERS = frozenset({"abs", "capitalize", "float", "int", "round", "title", "sum", "min", "max"})
# methods of text a template may call: (name, what it returns is text or a list, so its size is checked)
_TEXT_METHODS = {**dict.fromkeys(("isascii", "isalpha", "isalnum", "isdigit", "isdecimal", "isnumeric", "islower",
                                  "isupper", "isspace", "istitle", "startswith", "endswith"), False),
                 **dict.fromkeys(("lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "title",
                                  "capitalize", "replace"), True)}


class Unsupported(EventmapError):
    """The template uses something outside the subset; keep Jinja2 for it."""


class Bail(EventmapError):
    """Raised by generated code for data the translation does not decide: Jinja2 renders the value instead."""


def holds_undefined(value) -> bool:
    """True when a list, tuple or object a template built holds missing data (``_U``) at some depth."""
    kind = value.__class__
    if kind is list or kind is tuple:
        return any(item is UNDEFINED or holds_undefined(item) for item in value)
    if kind is dict:
        return any(item is UNDEFINED or holds_undefined(item) for item in value.values())
    return False


def may_hold_undefined(node) -> bool:
    """True when the value may be a list, tuple or object with missing data inside: only a literal written in
    the template makes one (data read from the scopes never holds any, and filters are given none)."""
    if isinstance(node, (nodes.List, nodes.Tuple, nodes.Dict)):
        return True
    if isinstance(node, nodes.CondExpr):
        return may_hold_undefined(node.expr1) or (node.expr2 is not None and may_hold_undefined(node.expr2))
    if isinstance(node, (nodes.And, nodes.Or)):
        return may_hold_undefined(node.left) or may_hold_undefined(node.right)
    if isinstance(node, (nodes.Getattr, nodes.Getitem)) or (isinstance(node, nodes.Filter) and node.name == "first"):
        return node.node is not None and may_hold_undefined(node.node)
    return False


def plain_attribute(name: str) -> bool:
    return not any(hasattr(kind, name) for kind in _JSON_TYPES)


def json_literal(value) -> bool:
    """True when ``repr(value)`` writes a fresh, equal JSON value (a folded constant)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(json_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_literal(v) for k, v in value.items())
    return False


class Translator:
    """Emits statements through ``writer`` and returns the name holding each value.

    ``resolve(name)`` gives the Python expression for a top-level template name
    (settings, vars, item, or an event key); it raises Unsupported for names
    Jinja2 would find among its globals. ``can_bail``: whether the caller renders
    the value with Jinja2 when the code raises Bail (``bails`` says whether it may).
    """

    def __init__(self, writer, environment, resolve, can_bail: bool = False):
        self.w = writer
        self.env = environment
        self.resolve = resolve
        self.can_bail = can_bail
        self.bails = False
        self.defined: set[str] = set()  # locals known never to hold _U
        self.locals: dict[str, str] = {}  # a loop's names -> the Python locals holding them
        self.known: dict[tuple, str] = {}  # (node id, safe) -> the local already holding its value here
        # whether the value being written, when missing, is used only where any Undefined behaves alike
        # (output, a test, a filter): ``x if c`` without else is Jinja2's plain Undefined, which does not chain
        self.safe = False

    def whole(self, ast) -> str:
        """The value of a template that is one ``{{ expression }}``: JSON data (Undefined becomes None)."""
        expr = self._single_expression(ast)
        value = self.expr(expr, safe=True)
        out = self.w.temp()
        self.w.emit(f"{out} = {value} if {value}.__class__ in _JSON_SCALARS else json_data({value})")
        return out

    def text(self, ast) -> str:
        """The text of a template: literal text and ``{{ }}`` outputs, in ``{% if %}`` and ``{% for %}``."""
        if len(ast.body) == 1 and isinstance(ast.body[0], nodes.Output):  # the usual case: one concatenation
            out = self.w.temp()
            self.w.emit(f"{out} = " + (" + ".join(self._pieces(ast.body[0])) or "''"))
            return out
        parts, size = self.w.temp("parts"), self.w.temp("size")
        self.w.emit(f"{parts}, {size} = [], 0")
        self._statements(ast.body, parts, size)
        return self._assign(f"''.join({parts})")

    def _pieces(self, output) -> list[str]:
        """The text of each part of one ``Output`` (as Jinja2's finalize writes it)."""
        pieces = []
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces.append(repr(node.data))
            else:
                value = self.expr(node, safe=True)
                pieces.append(f"({value} if {value}.__class__ is str else {self._text_of()}({value}))")
        return pieces

    def _statements(self, body: list, parts: str, size: str) -> None:
        """Output, if/elif/else and for (with its filter and else), appending text to ``parts``; output
        past the bound is Jinja2's to refuse, with its own count (templates.render_bounded)."""
        for node in body:
            if isinstance(node, nodes.Output):
                for piece in self._pieces(node):
                    text = self._assign(piece)
                    self.w.emit(f"{parts}.append({text})")
                    self.w.emit(f"{size} += len({text})")
                self._bail_if(f"{size} > {MAX_SIZE}")
            elif isinstance(node, nodes.If):
                self._if(node, parts, size)
            elif isinstance(node, nodes.For):
                self._for(node, parts, size)
            else:
                raise Unsupported(type(node).__name__)
        if not body:
            self.w.emit("pass")

    def _if(self, node, parts: str, size: str) -> None:
        test = self.expr(node.test)  # a condition (operators.rewrite): true or false
        self.w.emit(f"if {test}:")
        with self._branch():
            self._statements(node.body, parts, size)
        self.w.emit("else:")
        with self._branch():
            if node.elif_:
                self._if(nodes.If(node.elif_[0].test, node.elif_[0].body, node.elif_[1:], node.else_), parts, size)
            else:
                self._statements(node.else_, parts, size)

    def _for(self, node, parts: str, size: str) -> None:
        """``{% for x in items if test %}...{% else %}...{% endfor %}``: the else when nothing was looped over.
        The loop's names are its own (they do not leak); ``loop`` is Jinja2's (not translated)."""
        if node.recursive:
            raise Unsupported("recursive loop")
        targets = [t.name for t in (node.target.items if isinstance(node.target, nodes.Tuple) else [node.target])
                   if isinstance(t, nodes.Name)]
        if len(targets) != (len(node.target.items) if isinstance(node.target, nodes.Tuple) else 1):
            raise Unsupported("loop target")
        items = self.expr(node.iter, safe=True)  # any Undefined iterates as nothing
        empty = self.w.temp("empty")
        names = {name: self.w.temp("loop") for name in targets}
        shown = names[targets[0]] if isinstance(node.target, nodes.Name) else \
            "(" + ", ".join(names[name] for name in targets) + ("," if len(targets) == 1 else "") + ")"
        self.w.emit(f"{empty} = True")
        self.w.emit(f"for {shown} in (() if {items} is _U else {items}):")  # Undefined iterates as nothing
        outer = dict(self.locals)
        self.locals.update(names)
        with self._branch():
            if node.test is not None:
                self.w.emit(f"if not {self.expr(node.test)}:")
                self.w.emit("    continue")
            self._statements(node.body, parts, size)
            self.w.emit(f"{empty} = False")
        self.locals = outer
        self.w.emit(f"if {empty}:")
        with self._branch():
            self._statements(node.else_, parts, size)

    def _single_expression(self, ast):
        if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output) or len(ast.body[0].nodes) != 1:
            raise Unsupported("not one expression")
        node = ast.body[0].nodes[0]
        if isinstance(node, nodes.TemplateData):
            raise Unsupported("text")
        return node

    def _bail_if(self, *conditions: str) -> None:
        """``if any condition: raise Bail``: Jinja2 decides this event's value (``False`` ones are left out)."""
        parts = [part for part in conditions if part != "False"]
        if not parts:
            return
        condition = " or ".join(parts)
        if not self.can_bail:
            raise Unsupported("needs Jinja2 for some data, and a user's filter must not run twice")
        self.bails = True
        self.w.emit(f"if {condition}:")
        self.w.emit(f"    raise {self.w.constant(Bail, 'Bail')}")

    def _given(self, node, value: str) -> str:
        """``value is _U``, or a literal's list or object with missing data inside: what Jinja2 would hand
        over as its Undefined (whose wording in errors the translation does not have)."""
        if may_hold_undefined(node):
            return f"({value} is _U or {self.w.constant(holds_undefined, 'holds_undefined')}({value}))"
        return self._undefined(value)

    def _assign(self, expression: str) -> str:
        out = self.w.temp()
        self.w.emit(f"{out} = {expression}")
        return out

    def expr(self, node, safe: bool = False) -> str:
        key = (id(node), safe)
        if key in self.known:  # operators.rewrite repeats a subtree (``a or b`` tests a, then gives it)
            return self.known[key]
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise Unsupported(type(node).__name__)
        outer, self.safe = self.safe, safe
        try:
            out = method(node)
        finally:
            self.safe = outer
        if self._never_undefined(node):
            self.defined.add(out)
        if self._reusable(node):
            self.known[key] = out
        return out

    @contextlib.contextmanager
    def _branch(self):
        """An indented block (a branch, a loop's body): what it computes is not known after it."""
        known = dict(self.known)
        with self.w.indented():
            yield
        self.known = known

    def _reusable(self, node) -> bool:
        """True when the local holding this node's value may stand for the node where it is met again: the
        same answer (no user's filter, which may not give it twice) and a value, not an iterator."""
        for inner in (node, *node.find_all(nodes.Filter)):
            if isinstance(inner, nodes.Filter) and (inner.name in ("select", "reject", "map") or
                                                    (inner.name in FILTERS and inner.name not in BUILTIN_FILTERS)):
                return False
        return True

    def _never_undefined(self, node) -> bool:
        """True when the node's value is never missing data (``_U``): what reads, indexes and a condition
        without ``else`` give may be; a literal, a scope, a comparison or a filter's result never is."""
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return False
        if isinstance(node, nodes.Name):
            return node.name not in self.locals  # a scope never is; a loop's item may be
        if isinstance(node, nodes.Filter) and node.name == "first":
            return False
        if isinstance(node, (nodes.And, nodes.Or)):
            return self._never_undefined(node.left) and self._never_undefined(node.right)
        if isinstance(node, nodes.CondExpr):
            return node.expr2 is not None and self._never_undefined(node.expr1) and self._never_undefined(node.expr2)
        return True

    def _undefined(self, value: str) -> str:
        """``value is _U``, or ``False`` where it cannot be."""
        return "False" if value in self.defined else f"{value} is _U"

    def _none_for_undefined(self, value: str) -> str:
        """``value``, with missing data as None (what the language's filters take)."""
        return value if value in self.defined else f"None if {value} is _U else {value}"

    # --- values
    def _Const(self, node):
        if not json_literal(node.value):
            raise Unsupported("constant")
        return self._assign(repr(node.value))  # a fresh list or object each time, as Jinja2's code writes it

    def _name(self, name: str) -> str:
        """The Python expression for a name: a loop's own, else a scope."""
        if name in self.locals:
            return self.locals[name]
        if name in self.env.globals or name in _SPECIAL_NAMES:
            raise Unsupported("global name")
        return self.resolve(name)

    def _Name(self, node):
        name = self._name(node.name)
        return name if name.isidentifier() else self._assign(name)  # a local already: the scope, the item

    def _Getattr(self, node):
        if not plain_attribute(node.attr):  # ``vars.items``: the key when the object has it, else Jinja2's method
            inner = self.expr(node.node)
            self._bail_if(f"{inner}.__class__ is not dict or {node.attr!r} not in {inner}")
            return self._assign(f"{inner}[{node.attr!r}]")
        if isinstance(node.node, nodes.Name) and self._name(node.node.name) in ("event", "vars", "settings"):
            # an action's event, vars and settings are always objects
            return self._assign(f"{self._name(node.node.name)}.get({node.attr!r}, _U)")
        inner = self.expr(node.node)
        return self._assign(f"{inner}.get({node.attr!r}, _U) if isinstance({inner}, dict) else _U")

    def _Getitem(self, node):
        """``a[key]`` (the sandbox's getitem) and ``a[i:j]`` (Python's slice, as Jinja2 writes it)."""
        inner = self.expr(node.node)
        if isinstance(node.arg, nodes.Slice):
            parts = [self.expr(part) if part is not None else "None" for part in (node.arg.start, node.arg.stop,
                                                                                   node.arg.step)]
            self._bail_if(f"not ({inner}.__class__ is str or {inner}.__class__ is list or {inner} is _U)",
                          *(f"not ({p} is None or {p}.__class__ is int)" for p in parts))
            return self._assign(f"_U if {inner} is _U else {inner}[{parts[0]}:{parts[1]}:{parts[2]}]")
        key = self.expr(node.arg)
        attributes = self.w.constant(_DICT_ATTRIBUTES, "DICT_ATTRIBUTES")
        out = self.w.temp()
        # a key of an object; a key it lacks that no dict method has is missing; an index in a list;
        # missing data stays missing (ChainableUndefined); anything else is Jinja2's to decide
        self.w.emit(f"if {inner}.__class__ is dict and {key}.__class__ is str and "
                    f"({key} in {inner} or {key} not in {attributes}):")
        self.w.emit(f"    {out} = {inner}.get({key}, _U)")
        self.w.emit(f"elif {inner}.__class__ is list and {key}.__class__ is int and "
                    f"-len({inner}) <= {key} < len({inner}):")
        self.w.emit(f"    {out} = {inner}[{key}]")
        if inner not in self.defined:
            self.w.emit(f"elif {inner} is _U:")
            self.w.emit(f"    {out} = _U")
        self.w.emit("else:")
        with self._branch():
            self._bail_if("True")
        return out

    def _List(self, node):
        items = [self.expr(item) for item in node.items]
        return self._assign("[" + ", ".join(items) + "]")

    def _Tuple(self, node):
        items = [self.expr(item) for item in node.items]
        return self._assign("(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")")

    def _Dict(self, node):
        if any(isinstance(pair.key, (nodes.List, nodes.Dict)) or (isinstance(pair.key, nodes.Const)
               and isinstance(pair.key.value, (list, dict))) for pair in node.items):
            raise Unsupported("a list or object as a key: Jinja2 fails to compile the template")
        pairs = [(self.expr(pair.key), self.expr(pair.value)) for pair in node.items]
        if pairs:  # a key that is not text (Undefined, a number) fails as Jinja2 words it
            self._bail_if(*(f"{key}.__class__ is not str" for key, _ in pairs))
        return self._assign("{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}")

    # --- operators
    def _Concat(self, node):  # each part is text already (operators.TEXT)
        values = [self.expr(part) for part in node.nodes]
        return self._assign(" + ".join(values))

    def _CondExpr(self, node):
        """``a if test else b``, each side computed only when chosen (as Jinja2 does). Without ``else``,
        Jinja2's value is a plain Undefined, which fails where a missing value would chain (``(a if c).b``):
        read further, it is Jinja2's to decide."""
        safe = self.safe
        test = self.expr(node.test)
        out = self.w.temp()
        self.w.emit(f"if {test}:")
        with self._branch():
            self.w.emit(f"{out} = {self.expr(node.expr1, safe)}")
        self.w.emit("else:")
        with self._branch():
            if node.expr2 is None and not safe:
                self._bail_if("True")
            self.w.emit(f"{out} = {self.expr(node.expr2, safe) if node.expr2 is not None else '_U'}")
        return out

    def _Compare(self, node):
        """One comparison, Python's operator as Jinja2 writes it. Missing data (Undefined) equals only
        missing data, as ``_U`` does; ordering or ``in`` with it is Jinja2's to decide (it raises)."""
        if len(node.ops) != 1:
            raise Unsupported("chained comparison")
        left, right, op = self.expr(node.expr), self.expr(node.ops[0].expr), node.ops[0].op
        if op in ("in", "notin"):
            self._bail_if(self._undefined(left), self._undefined(right))
        elif op not in ("eq", "ne"):
            self._bail_if(self._given(node.expr, left), self._given(node.ops[0].expr, right))
        return self._assign(f"{left} {_COMPARISONS[op]} {right}")

    def _arithmetic(self, node):
        """``+ - * / // %`` on numbers, Python's operator (the sandbox's bounds are for text and lists)."""
        left, right = self.expr(node.left), self.expr(node.right)
        numbers = self.w.constant(_NUMBERS, "NUMBERS")
        self._bail_if(f"{left}.__class__ not in {numbers}", f"{right}.__class__ not in {numbers}")
        return self._assign(f"{left} {_ARITHMETIC[type(node)]} {right}")

    _Add = _Sub = _Mul = _Div = _FloorDiv = _Mod = _arithmetic

    def _Not(self, node):
        if not operators.boolean(node.node):
            raise Unsupported("not of a value")  # operators.rewrite makes every operand of not a condition
        return self._assign(f"not {self.expr(node.node, safe=True)}")

    def _and_or(self, node):
        """``and``/``or`` whose left side is true or false whatever the data (operators.rewrite turned the
        others into conditions): Python's and/or, which mean what the language's do on booleans."""
        if not operators.boolean(node.left):
            raise Unsupported("and/or of a value")
        safe = self.safe
        left = self.expr(node.left)
        out = self.w.temp()
        self.w.emit(f"if {'not ' if isinstance(node, nodes.And) else ''}{left}:")
        self.w.emit(f"    {out} = {left}")
        self.w.emit("else:")
        with self._branch():
            right = self.expr(node.right, safe)
            self.w.emit(f"{out} = {right}")
        return out

    _And = _Or = _and_or

    def _Test(self, node):
        if node.kwargs or node.dyn_args or node.dyn_kwargs or node.args:
            raise Unsupported("test form")
        value = self.expr(node.node, safe=True)
        test = self.w.constant(self.env.tests[node.name], "test")
        if node.name in (operators.TRUTHY, operators.FILLED) and self.env.tests[node.name] is operators.TESTS[node.name]:
            # runtime.is_truthy / is_filled, written inline (no Jinja2 Undefined reaches translated code)
            missing = [f"{value} is None", *(() if value in self.defined else (f"{value} is _U",)),
                       f"(not {value} and isinstance({value}, _EMPTIABLE))"]
            if node.name == operators.TRUTHY:
                missing.insert(0, f"{value} is False")
            return self._assign(f"not ({' or '.join(missing)})")
        if node.name in operators.TESTS:
            return self._assign(f"{test}({value})")
        if node.name in _KIND_TESTS and node.name in self.env.tests:
            undefined = self.w.constant(self.env.undefined(), "UNDEFINED")  # what Jinja2 would pass for _U
            shown = value if value in self.defined else f"{undefined} if {value} is _U else {value}"
            return self._assign(f"{test}({shown})")
        raise Unsupported("test")

    def _Call(self, node):
        """A method of text (``name.isascii()``, ``code.split('-')``) or an object's ``items()``, ``keys()``,
        ``values()``, called as the sandbox calls it."""
        target = node.node
        if not isinstance(target, nodes.Getattr) or node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise Unsupported("call")
        if target.attr in ("items", "keys", "values") and not node.args:
            mapping = self.expr(target.node)
            # a key of that name is what the template reads (templates._Environment.getattr): Jinja2's to call
            self._bail_if(f"{mapping}.__class__ is not dict", f"{target.attr!r} in {mapping}")
            return self._assign(f"{mapping}.{target.attr}()")
        if target.attr not in _TEXT_METHODS:
            raise Unsupported("call")
        text = self.expr(target.node)
        args = [self.expr(arg) for arg in node.args]
        self._bail_if(f"{text}.__class__ is not str", *(self._given(n, arg) for n, arg in zip(node.args, args)))
        check = self.w.constant(check_size, "check_size")
        for arg in args:  # the sandbox's bounds on what a call takes (templates._Environment.call)
            self.w.emit(f"{check}({arg}, \"a call's argument\")")
            self.w.emit(f"if {arg}.__class__ is int and abs({arg}) > {MAX_SIZE}:")
            self.w.emit(f"    {self.w.constant(refuse_over, 'refuse_over')}(abs({arg}), {target.attr + '()'!r})")
        out = self._assign(f"{text}.{target.attr}({', '.join(args)})")
        if _TEXT_METHODS[target.attr]:
            self.w.emit(f"{check}({out}, 'a call')")
        return out

    # --- filters
    def _text_of(self) -> str:
        return self.w.constant(self.env.filters[operators.TEXT], "text_of")

    def _Filter(self, node):
        if node.node is None or node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise Unsupported("filter form")
        if node.name == operators.TEXT:
            value = self.expr(node.node, safe=True)
            return self._assign(f"{value} if {value}.__class__ is str else {self._text_of()}({value})")
        if node.name == "join" and isinstance(node.node, (nodes.List, nodes.Filter)) and self._join_form(node):
            return self._join(node)
        if node.name == "join" and "join" in FILTERS and self._characters_form(node):
            return self._characters(node)
        if node.name in ("length", "count") and node.name not in FILTERS and self.env.filters[node.name] is len \
                and not node.args:
            value = self.expr(node.node, safe=True)
            if value in self.defined:
                return self._assign(f"len({value})")
            return self._assign(f"0 if {value} is _U else len({value})")  # Undefined's length is 0
        if node.name in ("select", "reject", "map", "first") and node.name not in FILTERS:
            return self._sequence_filter(node)
        if node.name in _PLAIN_FILTERS and node.name not in FILTERS:
            return self._plain_filter(node)
        if node.name not in FILTERS:
            raise Unsupported("a Jinja2 built-in filter")
        fn = FILTERS[node.name]  # what Jinja2 calls, less its Undefined-to-None wrapper (done here)
        if node.name == "try" and "try" in BUILTIN_FILTERS and node.args and isinstance(node.args[0], nodes.Const) \
                and node.args[0].value in BUILTIN_FILTERS and node.args[0].value != "try":
            fn, node = tried(node.args[0].value), nodes.Filter(node.node, "try", node.args[1:], [], None, None)
        value = self.expr(node.node, safe=True)
        args = [self.expr(arg, safe=True) for arg in node.args]
        inside = [self._given(n, v) for n, v in zip([node.node, *node.args], [value, *args]) if may_hold_undefined(n)]
        if inside:
            self._bail_if(*inside)
        present = getattr(fn, "when_present", None)  # a built-in: null in, null out
        converts = getattr(fn, "converts_text", None)
        if converts is not None and not args:  # try(a date filter): most text is kept, known without a call
            call = f"{self.w.constant(fn, f'jinja_{node.name}')}({self._none_for_undefined(value)})"
            return self._assign(f"{value} if {value}.__class__ is str and not "
                                f"{self.w.constant(converts, 'converts_text')}({value}) else {call}")
        if present is None:
            name = self.w.constant(fn, f"jinja_{node.name}")
            shown = ", ".join(self._none_for_undefined(v) for v in [value, *args])
            return self._assign(f"{name}({shown})")
        name = self.w.constant(present, f"jinja_{node.name}")
        shown = ", ".join([value] + [self._none_for_undefined(a) for a in args])
        missing = f"{value} is None" if value in self.defined else f"{value} is _U or {value} is None"
        return self._assign(f"None if {missing} else {name}({shown})")

    def _plain_filter(self, node) -> str:
        """One of Jinja2's filters of plain values, the very callable its compiled code calls (the bounded one
        where templates.py bounds it); missing data in or among the arguments is Jinja2's to decide."""
        fn = self.env.filters[node.name]
        pass_arg = _PassArg.from_obj(fn)
        if pass_arg not in (None, _PassArg.environment):
            raise Unsupported("a Jinja2 filter that takes the context")
        value = self.expr(node.node, safe=True)
        args = [self.expr(arg, safe=True) for arg in node.args]
        self._bail_if(*(self._given(n, v) for n, v in zip([node.node, *node.args], [value, *args])))
        given = [self.w.constant(self.env, "environment")] if pass_arg is _PassArg.environment else []
        return self._assign(f"{self.w.constant(fn, f'jinja_{node.name}')}({', '.join([*given, value, *args])})")

    def _sequence_filter(self, node) -> str:
        """Jinja2's select and reject (with a test), map (with a filter) and first, lazily as Jinja2 does;
        ``first`` of select/reject/map is one loop that stops at the first item through them all."""
        if node.name == "first":
            stages: list = []
            base = node.node
            while isinstance(base, nodes.Filter) and base.name in ("select", "reject", "map") \
                    and base.name not in FILTERS:
                stages.insert(0, base)
                base = base.node
            if stages:
                return self._first_through(base, stages)
            value = self.expr(node.node, safe=True)
            return self._assign(f"_U if {value} is _U else next(iter({value}), _U)")  # empty: Undefined
        value = self.expr(node.node, safe=True)
        call, args = self._stage(node)
        self._bail_if(self._given(node.node, value), *(self._given(n, a) for n, a in zip(node.args[1:], args)))
        helper = self.w.constant(_mapped if node.name == "map" else _selected, f"jinja_{node.name}")
        keep = "" if node.name == "map" else f", {node.name == 'select'}"
        return self._assign(f"{helper}({value}, {call}, ({', '.join(args)}{',' if len(args) == 1 else ''}){keep})")

    def _stage(self, node) -> tuple[str, list[str]]:
        """(the test or filter a select, reject or map calls, the locals holding its further arguments)."""
        if node.name == "map" and not node.args:
            raise Unsupported("map of an attribute")
        if node.args and not (isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str)):
            raise Unsupported("a test or filter named by data")
        name = node.args[0].value if node.args else None
        table = self.env.filters if node.name == "map" else self.env.tests
        fn = table.get(name) if name is not None else bool  # select with no test: the items that are true
        if fn is None or getattr(fn, "jinja_pass_arg", None) is not None:
            raise Unsupported("a test or filter that takes Jinja2's context")
        return self.w.constant(fn, f"{node.name}_{name or 'bool'}"), [self.expr(arg) for arg in node.args[1:]]

    def _first_through(self, base, stages: list) -> str:
        """``items | select(...) | map(...) | first``: each item through every stage in turn, the first that
        comes out of the last; the order Jinja2's generators pull them in, without a generator per stage."""
        value = self.expr(base, safe=True)
        calls = [self._stage(stage) for stage in stages]
        self._bail_if(self._given(base, value), *(self._given(n, a) for stage, (_, args) in zip(stages, calls)
                                                  for n, a in zip(stage.args[1:], args)))
        out, item = self.w.temp(), self.w.temp("item")
        self.w.emit(f"{out} = _U")  # nothing came out: Undefined
        self.w.emit(f"if {value} is not _U and {value}:")
        with self._branch():
            self.w.emit(f"for {item} in {value}:")
            with self._branch():
                for stage, (call, args) in zip(stages, calls):
                    shown = ", ".join([item, *args])
                    if stage.name == "map":
                        item = self._assign(f"{call}({shown})")
                    else:
                        self.w.emit(f"if {'not ' if stage.name == 'select' else ''}{call}({shown}):")
                        self.w.emit("    continue")
                self.w.emit(f"{out} = {item}")
                self.w.emit("break")
        return out

    def _characters_form(self, node) -> bool:
        """``text | select('in', '0123456789') | join`` (or reject): characters kept or left out, joined."""
        inner = node.node
        return (not node.args or (len(node.args) == 1 and isinstance(node.args[0], nodes.Const)
                                  and node.args[0].value == "")) \
            and isinstance(inner, nodes.Filter) and inner.name in ("select", "reject") and inner.name not in FILTERS \
            and not (inner.kwargs or inner.dyn_args or inner.dyn_kwargs) and len(inner.args) == 2 \
            and [getattr(arg, "value", None).__class__ for arg in inner.args] == [str, str] \
            and getattr(inner.args[0], "value", None) == "in" and self.env.tests.get("in") is _test_in()

    def _characters(self, node) -> str:
        """The characters of text that are (select) or are not (reject) among those written, as one string:
        what join makes of the characters select or reject yields; anything else goes the general way."""
        inner = node.node
        text = self.expr(inner.node, safe=True)
        written = inner.args[1].value
        out = self.w.temp()
        self.w.emit(f"if {text}.__class__ is str:")
        with self._branch():
            if inner.name == "reject":
                table = self.w.constant(str.maketrans("", "", written), "LEFT_OUT")
                self.w.emit(f"{out} = {text}.translate({table})")
            else:
                kept = self.w.constant(frozenset(written), "KEPT")
                self.w.emit(f"{out} = ''.join([c for c in {text} if c in {kept}])")
            self._bail_if(f"len({out}) > {MAX_SIZE}")  # past join's bound: Jinja2 words the refusal
        self.w.emit(f"elif {text} is None or {text} is _U:")  # nothing to select from: join makes ""
        self.w.emit(f"    {out} = ''")
        self.w.emit("else:")
        with self._branch():
            self._bail_if("True")
        return out

    def _join_form(self, node) -> bool:
        """``[a, b] | join(' ')`` or ``[a, b] | select | join(' ')``, with a written separator."""
        if len(node.args) > 1 or (node.args and not (isinstance(node.args[0], nodes.Const)
                                                     and isinstance(node.args[0].value, str))):
            return False
        inner = node.node
        if isinstance(inner, nodes.Filter) and inner.name == "select" and "select" not in FILTERS:
            if inner.args or inner.kwargs or inner.dyn_args or inner.dyn_kwargs:
                return False
            inner = inner.node
        return isinstance(inner, nodes.List)

    def _join(self, node) -> str:
        """A full name from its parts: the join filter itself (null and missing items left out); select
        keeps the items that are true to Jinja2, Undefined being false."""
        separator = node.args[0].value if node.args else ""
        inner, keep_true = node.node, False
        if isinstance(inner, nodes.Filter):
            inner, keep_true = inner.node, True
        items = [self.expr(item, safe=True) for item in inner.items]  # join leaves out any missing item
        listed = "[" + ", ".join(items) + (",]" if len(items) == 1 else "]")
        if keep_true:
            listed = f"[x for x in {listed} if x is not _U and x]"
        join = self.w.constant(FILTERS["join"], "jinja_join")
        return self._assign(f"{join}({listed}, {separator!r})")


def _test_in():
    from jinja2.tests import test_in
    return test_in


def _selected(value, test, args: tuple, keep: bool):
    """Jinja2's select (``keep``) and reject: the items for which ``test`` is (not) true, as it yields them."""
    if value:
        for item in value:
            if bool(test(item, *args)) is keep:
                yield item


def _mapped(value, fn, args: tuple):
    """Jinja2's map with a filter: each item through it, as it yields them."""
    if value:
        for item in value:
            yield fn(item, *args)


def reads_only_settings(ast, builtin_filters) -> bool:
    """True when a template's value depends on settings alone (so it can be rendered once per route)."""
    names = {node.name for node in ast.find_all(nodes.Name) if node.ctx == "load"}
    if not names <= {"settings"}:
        return False
    if any(node.name not in builtin_filters for node in ast.find_all((nodes.Filter, nodes.Test))):
        return False  # a user's filter (or Jinja2's random) may not give the same answer twice
    return not any(isinstance(call.node, nodes.Name) for call in ast.find_all(nodes.Call))
