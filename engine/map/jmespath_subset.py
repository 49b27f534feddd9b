"""Translate JMESPath expressions into Python statements.

Why: jmespath's interpreter walks the expression's tree on every call (a visitor
method per node, each function's arguments type-checked by name), so a
condition such as ``type(item) == 'string'`` costs several microseconds where
the same reads and comparison written in Python cost a fraction of that.

The translation is jmespath's own semantics (jmespath 1.x's TreeInterpreter),
node by node: each node is written as the operations its visitor performs, in
the same order, and functions are jmespath's own implementations, called
directly when their arguments are of the types their signature allows and
through jmespath's checking call otherwise (so a wrong type raises jmespath's
own error). Anything else (``&expressions``, unknown functions, a wrong number
of arguments) raises :class:`Unsupported` and the caller keeps
``expression.search``.
"""
from __future__ import annotations

import operator
from collections import OrderedDict
from numbers import Number

from jmespath import functions as _functions

from ..problems import EventmapError

FUNCTIONS = _functions.Functions()  # what TreeInterpreter makes for every search: stateless, so shared
# jmespath checks an argument's type by its class's name; these are the classes of those names
_PY_TYPES = {"bool": bool, "list": list, "dict": dict, "NoneType": type(None), "str": str, "float": float, "int": int,
             "OrderedDict": OrderedDict}
_COMPARABLE = (int, float, str)  # what an ordering compares, found by class (the rest: jmespath's own test)
_NOT_NUMBERS = (str, list, dict, bool, type(None))
# what type() answers for each of JSON's classes (jmespath's _func_type)
_TYPE_NAMES = {str: "string", bool: "boolean", list: "array", dict: "object", float: "number", int: "number",
               type(None): "null"}
_ORDERINGS = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}
_ORDERING_FUNCTIONS = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


class Unsupported(EventmapError):
    """The expression uses something outside the subset; keep jmespath's interpreter for it."""


def _actual_number(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, Number)


def equals(x, y) -> bool:
    """jmespath's ``==``: 0 and 1 never equal false and true (Python's own == says they do).

    So a boolean equals only itself (true and false are single objects), and everything else is Python's ==.
    """
    if x.__class__ is bool or y.__class__ is bool:
        return x is y
    return x == y


def ordered(name: str):
    """jmespath's ``<``, ``<=``, ``>``, ``>=``: null unless both sides are numbers or text."""
    compare = _ORDERING_FUNCTIONS[name]

    def order(left, right):
        if not ((_actual_number(left) or isinstance(left, str)) and (_actual_number(right) or isinstance(right, str))):
            return None
        return compare(left, right)
    return order


def is_false(value) -> bool:
    """jmespath's false: null, false, and empty text, list or object (0 is true)."""
    return value == "" or value == [] or value == {} or value is None or value is False


def negation(value) -> bool:
    """jmespath's ``!``: Python's ``not``, except that ``!0`` is false (0 is true to jmespath)."""
    if _actual_number(value) and value == 0:
        return False
    return not value


def signature(name: str, arity: int) -> tuple | None:
    """(jmespath's function, the classes each argument may have, () for any) for a function whose arguments
    are checked by their own type alone; None for one whose list elements are checked too.

    Raises Unsupported for what jmespath decides only when it runs (unknown names, a wrong
    number of arguments) and for functions taking ``&expressions``.
    """
    function(name, arity)  # its checks
    spec = FUNCTIONS.FUNCTION_TABLE[name]
    types = [s["types"] for s in spec["signature"]]
    if any("-" in t for ts in types for t in ts):
        return None
    return spec["function"], [tuple(_PY_TYPES[p] for t in ts for p in _functions.REVERSE_TYPES_MAP[t]
                                    if p in _PY_TYPES) for ts in types]


def function(name: str, arity: int):
    """A callable doing what jmespath's ``call_function(name, args)`` does, the type check by class first.

    Raises Unsupported for what jmespath decides only when it runs (unknown names, a wrong
    number of arguments) and for functions taking ``&expressions``.
    """
    spec = FUNCTIONS.FUNCTION_TABLE.get(name)
    if spec is None:
        raise Unsupported(f"unknown function {name}")
    fn, signature = spec["function"], spec["signature"]
    variadic = bool(signature) and signature[-1].get("variadic")
    if (arity < len(signature)) if variadic else (arity != len(signature)):
        raise Unsupported("arity")
    types = [s["types"] for s in signature]
    if any("expref" in t for ts in types for t in ts):
        raise Unsupported("expression reference")
    checked = FUNCTIONS.call_function
    if not any(types):  # type(x), not_null(...), to_string(x): any value, no check
        return lambda *args: fn(FUNCTIONS, *args)
    if any("-" in t for ts in types for t in ts):  # array-string and such: jmespath checks the elements too
        return lambda *args: checked(name, list(args))
    allowed = [tuple(_PY_TYPES[p] for t in ts for p in _functions.REVERSE_TYPES_MAP[t] if p in _PY_TYPES)
               for ts in types]

    def call(*args):
        for arg, kinds in zip(args, allowed):
            if kinds and arg.__class__ not in kinds:
                return checked(name, list(args))  # jmespath's own check decides, and words the error
        return fn(FUNCTIONS, *args)
    return call


class Translator:
    """Emits statements through ``writer`` (map/codegen.Writer) and returns the local holding each value.

    ``scope(name)`` is the Python expression for a name read at the top of the expression
    (``event`` in ``event.userId``); ``root``, when given, is instead a local holding the
    object the expression is searched on.
    """

    def __init__(self, writer, scope=None, root: str | None = None, objects: set[str] | frozenset = frozenset()):
        self.w = writer
        self.scope = scope
        self.root = root
        self.objects = set(objects)  # expressions known to hold an object (a read from them needs no check)

    def value(self, parsed: dict) -> str:
        return self._node(parsed, self.root)

    # ``current`` is the local holding ``@``; None: the scopes themselves (names read through ``scope``)
    def _node(self, node: dict, current: str | None) -> str:
        method = getattr(self, "_" + node["type"], None)
        if method is None:
            raise Unsupported(node["type"])
        return method(node, current)

    def _temp(self) -> str:
        return self.w.temp("jp")

    def _field(self, node, current):
        out = self._temp()
        if current is None:
            if self.scope is None:
                raise Unsupported("no scope")
            scope = self.scope(node["value"])
            if scope in self.objects or scope.isidentifier():  # a local already (the item of @each)
                return scope
            self.w.emit(f"{out} = {scope}")
        elif current in self.objects:
            self.w.emit(f"{out} = {current}.get({node['value']!r})")
        else:
            self.w.emit(f"{out} = {current}.get({node['value']!r}) if isinstance({current}, dict) else None")
        return out

    def _current(self, node, current):
        if current is None:
            raise Unsupported("@ at the top")
        return current

    _identity = _current

    def _subexpression(self, node, current):
        for child in node["children"]:
            current = self._node(child, current)
        return current

    _index_expression = _subexpression
    _pipe = _subexpression

    def _index(self, node, current):
        if current is None:
            raise Unsupported("index at the top")
        out, index = self._temp(), node["value"]
        self.w.emit(f"{out} = {current}[{index}] if isinstance({current}, list) and "
                    f"{-index - 1 if index < 0 else index} < len({current}) else None")
        return out

    def _slice(self, node, current):
        if current is None:
            raise Unsupported("slice at the top")
        out = self._temp()
        cut = self.w.constant(slice(*node["children"]), "SLICE")
        self.w.emit(f"{out} = {current}[{cut}] if isinstance({current}, list) else None")
        return out

    def _literal(self, node, current):
        value = node["value"]
        out = self._temp()
        if value is None or isinstance(value, (str, bool, int)):
            self.w.emit(f"{out} = {value!r}")
        else:
            self.w.emit(f"{out} = {self.w.constant(value, 'LITERAL')}")  # the same object each time, as jmespath
        return out

    def _comparator(self, node, current):
        typed = _type_test(node)
        if typed is not None:  # type(x) == 'string': the class of x, for JSON's own classes
            value = self._node(typed[0]["children"][0], current)
            out = self._temp()
            names, call = self.w.constant(_TYPE_NAMES, "JP_TYPE_NAMES"), self.w.constant(function("type", 1), "jp_type")
            kinds = self.w.constant(tuple(k for k, name in _TYPE_NAMES.items() if name == typed[1]), "JP_KINDS")
            test = f"({value}.__class__ in {kinds} if {value}.__class__ in {names} else {call}({value}) == {typed[1]!r})"
            self.w.emit(f"{out} = {test}" if node["value"] == "eq" else f"{out} = not {test}")
            return out
        left = self._node(node["children"][0], current)
        right = self._node(node["children"][1], current)
        out, kind = self._temp(), node["value"]
        if kind in ("eq", "ne"):
            plain = any(_plain_equality(child) for child in node["children"])
            test = f"{left} == {right}" if plain else f"{self.w.constant(equals, 'jp_equals')}({left}, {right})"
            self.w.emit(f"{out} = {test}" if kind == "eq" else f"{out} = not ({test})")
            return out
        order = self.w.constant(ordered(kind), f"jp_{kind}")
        comparable = self.w.constant(_COMPARABLE, "JP_COMPARABLE")
        self.w.emit(f"{out} = {left} {_ORDERINGS[kind]} {right} if {left}.__class__ in {comparable} and "
                    f"{right}.__class__ in {comparable} else {order}({left}, {right})")
        return out

    def _or_expression(self, node, current):
        left = self._node(node["children"][0], current)
        out = self._temp()
        self.w.emit(f"if {_false(left)}:")
        with self.w.indented():
            right = self._node(node["children"][1], current)
            self.w.emit(f"{out} = {right}")
        self.w.emit("else:")
        self.w.emit(f"    {out} = {left}")
        return out

    def _and_expression(self, node, current):
        left = self._node(node["children"][0], current)
        out = self._temp()
        self.w.emit(f"if {_false(left)}:")
        self.w.emit(f"    {out} = {left}")
        self.w.emit("else:")
        with self.w.indented():
            right = self._node(node["children"][1], current)
            self.w.emit(f"{out} = {right}")
        return out

    def _not_expression(self, node, current):
        value = self._node(node["children"][0], current)
        out = self._temp()
        # JSON's other kinds are Python's not; a number goes through jmespath's rule (!0 is false)
        kinds = self.w.constant(_NOT_NUMBERS, "JP_NOT_NUMBERS")
        self.w.emit(f"{out} = (not {value}) if {value}.__class__ in {kinds} else "
                    f"{self.w.constant(negation, 'jp_not')}({value})")
        return out

    def _function_expression(self, node, current):
        call = self.w.constant(function(node["value"], len(node["children"])), f"jp_{node['value']}")
        args = [self._node(child, current) for child in node["children"]]
        out = self._temp()
        if node["value"] == "type":  # the answer for JSON's own classes, looked up (the function for any other)
            self.w.emit(f"{out} = {self.w.constant(_TYPE_NAMES, 'JP_TYPE_NAMES')}.get({args[0]}.__class__) "
                        f"or {call}({args[0]})")
            return out
        checked = signature(node["value"], len(args))
        if checked is None:
            self.w.emit(f"{out} = {call}({', '.join(args)})")
            return out
        # jmespath's function itself when each argument's class is one its signature allows (else the call
        # that checks, and words the error)
        fn, allowed = checked
        tests = [f"{arg}.__class__ in {self.w.constant(kinds, 'JP_KINDS')}" for arg, kinds in zip(args, allowed)
                 if kinds]
        functions = self.w.constant(FUNCTIONS, "JP_FUNCTIONS")
        direct = f"{self.w.constant(fn, 'jp_' + node['value'] + '_function')}({functions}, {', '.join(args)})"
        if tests:
            self.w.emit(f"{out} = {direct} if {' and '.join(tests)} else {call}({', '.join(args)})")
        else:
            self.w.emit(f"{out} = {direct}")
        return out

    def _multi_select_list(self, node, current):
        return self._multi_select(node, current, lambda values: "[" + ", ".join(values) + "]")

    def _multi_select_dict(self, node, current):
        keys = [child["value"] for child in node["children"]]
        return self._multi_select(node, current,
                                  lambda values: "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(keys, values)) + "}")

    def _key_val_pair(self, node, current):
        return self._node(node["children"][0], current)

    def _multi_select(self, node, current, build):
        out = self._temp()
        if current is not None:  # at the top, @ is the scopes: never null
            self.w.emit(f"if {current} is None:")
            self.w.emit(f"    {out} = None")
            self.w.emit("else:")
            self.w.depth += 1
        values = [self._node(child, current) for child in node["children"]]
        self.w.emit(f"{out} = {build(values)}")
        if current is not None:
            self.w.depth -= 1
        return out

    def _flatten(self, node, current):
        base = self._node(node["children"][0], current)
        out, element = self._temp(), self._temp()
        self.w.emit(f"if not isinstance({base}, list):")
        self.w.emit(f"    {out} = None")
        self.w.emit("else:")
        self.w.emit(f"    {out} = []")
        self.w.emit(f"    for {element} in {base}:")
        self.w.emit(f"        if isinstance({element}, list):")
        self.w.emit(f"            {out}.extend({element})")
        self.w.emit("        else:")
        self.w.emit(f"            {out}.append({element})")
        return out

    def _projection(self, node, current, values: str = "{}", test: str = "isinstance({}, list)"):
        base = self._node(node["children"][0], current)
        out, element = self._temp(), self._temp()
        self.w.emit(f"if not {test.format(base)}:")
        self.w.emit(f"    {out} = None")
        self.w.emit("else:")
        with self.w.indented():
            self.w.emit(f"{out} = []")
            self.w.emit(f"for {element} in {values.format(base)}:")
            with self.w.indented():
                if node["type"] == "filter_projection":
                    condition = self._node(node["children"][2], element)
                    self.w.emit(f"if {_false(condition)}:")
                    self.w.emit("    continue")
                mapped = self._node(node["children"][1], element)
                self.w.emit(f"if {mapped} is not None:")
                self.w.emit(f"    {out}.append({mapped})")
        return out

    def _value_projection(self, node, current):
        return self._projection(node, current, "{}.values()", "isinstance({}, dict)")

    _filter_projection = _projection


def _type_test(node: dict) -> tuple[dict, str] | None:
    """(the type() call, the name) for ``type(x) == 'name'`` or ``!=`` (either way round), else None."""
    if node["value"] not in ("eq", "ne"):
        return None
    for call, name in (node["children"], node["children"][::-1]):
        if call["type"] == "function_expression" and call["value"] == "type" and len(call["children"]) == 1 \
                and name["type"] == "literal" and isinstance(name["value"], str):
            return call, name["value"]
    return None


def boolean(parsed: dict) -> bool:
    """True when the expression's value is true or false whatever the data (a condition can test it as is)."""
    kind = parsed["type"]
    if kind == "comparator":
        return parsed["value"] in ("eq", "ne")
    if kind == "not_expression":
        return True
    if kind in ("and_expression", "or_expression"):
        return all(boolean(child) for child in parsed["children"])
    return kind == "function_expression" and parsed["value"] in ("contains", "starts_with", "ends_with")


def _false(value: str) -> str:
    """jmespath's false test (null, false, empty text, list or object), written inline; a value true to Python
    is none of those, so most are decided by the truth test alone."""
    return f"(not {value} and ({value} is None or {value} is False or {value} == '' or {value} == [] or {value} == {{}}))"


def _plain_equality(node: dict) -> bool:
    """True when ``==`` against this side is Python's own: a literal that is not 0, 1, true or false."""
    if node["type"] != "literal":
        return False
    value = node["value"]
    return not (isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)))
