"""Compile a mapping's node tree into one plain Python function.

Why: the interpreter (``Node.evaluate``) walks objects and calls JMESPath and
Jinja2 for every field of every event. Most fields are plain reads such as
``traits.email``; written out as Python (``v = event.get("traits")``...) they
cost a fraction of that. This module writes that Python, once per action, and
keeps the interpreter's exact semantics: it is checked against it for every
fixture and shipped mapping (tests/test_compiled.py).

* plain JMESPath paths (``a.b.c``, ``@``) become dict reads; others call the
  compiled JMESPath expression;
* templates that read only ``settings`` are rendered once per route and read
  from ``K`` (the route's constants); simple templates become Python
  (jinja_subset.py); the rest call Jinja2, compiled once;
* everything else (filters, functions, @each, @merge...) is spelled out.

``eventmap explain --code DEST TYPE`` prints the generated source.
"""
from __future__ import annotations

import contextlib
import math

from .filters import BUILTIN_FILTERS, FilterError
from .jinja_subset import Translator, Unsupported, reads_only_settings
from .language import (
    Array,
    Condition,
    Each,
    Function,
    Literal,
    MappingError,
    Modified,
    Node,
    Object,
    Path,
    Scope,
    Template,
    describe_type,
    template_ast,
)
from .templates import environment


class _Undefined:
    """A missing value inside a translated template (Jinja2's Undefined)."""

    __slots__ = ()

    def __repr__(self):
        return "_U"


UNDEFINED = _Undefined()
EMPTIABLE = (str, list, dict)


def jinja_names(event, settings, vars) -> dict:
    """What a Jinja2 template sees, exactly as Scope.jinja() builds it."""
    names = dict(event) if isinstance(event, dict) else {}
    names.update(settings=settings, vars=vars)
    return names


class Writer:
    """Lines of Python, fresh local names, and the objects the code refers to."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 1
        self.count = 0
        self.namespace = {"MappingError": MappingError, "FilterError": FilterError, "_U": UNDEFINED,
                          "_EMPTIABLE": EMPTIABLE, "describe_type": describe_type, "jinja_names": jinja_names}
        self.ids: dict[int, str] = {}
        self.route_nodes: list[Node] = []

    def emit(self, line: str) -> None:
        """Add one line. Code is written with reprs, so a line break or NUL can only come from
        mapping text quoted in a comment (a folded YAML template): escaped, it stays one line."""
        if "\n" in line or "\r" in line or "\0" in line:
            line = line.replace("\n", "\\n").replace("\r", "\\r").replace("\0", "\\0")
        self.lines.append("    " * self.depth + line)

    @contextlib.contextmanager
    def indented(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def temp(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, obj, prefix: str) -> str:
        """A module-level name for ``obj`` (a filter, a compiled expression, a shared literal)."""
        if id(obj) not in self.ids:
            name = f"{prefix}_{len(self.ids) + 1}"
            self.ids[id(obj)] = name
            self.namespace[name] = obj
        return self.ids[id(obj)]

    def route_constant(self, node: Node) -> str:
        if node not in self.route_nodes:
            self.route_nodes.append(node)
        return f"K[{self.route_nodes.index(node)}]"


class Context:
    """Where a value is computed: what @path reads (the event or an item) and the current item."""

    def __init__(self, data: str, item: str | None):
        self.data, self.item = data, item


def empty_check(v: str) -> str:
    return f"{v} is None or (isinstance({v}, _EMPTIABLE) and not {v})"


def where_text(where) -> str:
    return ".".join(str(p) for p in where)


class Generator:
    """Writes the statements for each kind of node; ``value`` returns the local holding the result."""

    def __init__(self, writer: Writer, root: str = "event"):
        self.w = writer
        self.root = root
        self.env = environment()

    def names(self, ctx: Context) -> str:
        """The expression for what a Jinja2 template sees here (built only where Jinja2 is used)."""
        names = f"jinja_names({self.root}, settings, vars)"
        return f"{{**{names}, 'item': {ctx.item}}}" if ctx.item is not None else names

    # --- entry point
    def function(self, name: str, doc: str, vars: list, body: Node) -> None:
        """``def name(event, settings, K)`` returning (body value, vars dict)."""
        self.w.lines.append(f"def {name}({self.root}, settings, K):")
        self.w.emit(repr(doc))
        self.w.emit("vars = {}")
        ctx = Context(self.root, None)
        for var_name, node in vars:
            self.w.emit(f"# vars.{var_name}: {node.describe()}")
            value = self.value(node, ctx)
            self.w.emit(f"vars[{var_name!r}] = {value}")
        value = self.value(body, ctx)
        self.w.emit(f"return {value}, vars")

    def values_function(self, name: str, doc: str, nodes: list) -> None:
        """``def name(event, settings, K, vars)`` returning a tuple with the value of each node."""
        self.w.lines.append(f"def {name}({self.root}, settings, K, vars):")
        self.w.emit(repr(doc))
        ctx = Context(self.root, None)
        values = [self.value(node, ctx) for node in nodes]
        self.w.emit(f"return ({', '.join(values)}{',' if len(values) == 1 else ''})")

    def value(self, node: Node, ctx: Context) -> str:
        kind = type(node)
        if kind is Literal:
            out = self.w.temp()
            self.w.emit(f"{out} = {self.literal(node.value)}")
            return out
        if kind is Path:
            return self.path(node, ctx)
        if kind is Template:
            return self.template(node, ctx)
        if kind is Object:
            return self.object(node, ctx)
        if kind is Array:
            return self.array(node, ctx)
        if kind is Modified:
            return self.modified(node, ctx)
        if kind is Condition:
            return self.condition(node, ctx)
        if kind is Each:
            return self.each(node, ctx)
        if kind is Function:
            return self.function_call(node, ctx)
        # an unknown Node subclass: let it evaluate itself
        out = self.w.temp()
        item = f", {ctx.item}, True" if ctx.item else ""
        self.w.emit(f"{out} = {self.w.constant(node, 'node')}.evaluate(Scope({self.root}, settings, vars{item}))")
        self.w.namespace["Scope"] = Scope
        return out

    def literal(self, value) -> str:
        if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            return repr(value)
        return self.w.constant(value, "LITERAL")

    # --- reads
    def read(self, expression, from_root: bool, ctx: Context, out: str) -> None:
        """``out = <JMESPath expression applied to the data>``, as dict reads when it is a plain path."""
        data = self.root if from_root else ctx.data
        steps = plain_path(expression.parsed)
        if steps is None:
            self.w.emit(f"{out} = {self.w.constant(expression, 'jmespath')}.search({data})")
            return
        if not steps:
            self.w.emit(f"{out} = {data}")
            return
        first, rest = steps[0], steps[1:]
        if data == self.root:
            self.w.emit(f"{out} = {data}.get({first!r})")
        else:
            self.w.emit(f"{out} = {data}.get({first!r}) if isinstance({data}, dict) else None")
        for key in rest:
            self.w.emit(f"{out} = {out}.get({key!r}) if isinstance({out}, dict) else None")

    def path(self, node: Path, ctx: Context) -> str:
        out = self.w.temp()
        self.w.emit(f"# {where_text(node.where)}: {node.describe()}")
        if not node.reads:
            self.w.emit(f"{out} = None")
            return out
        opened = 0
        for _text, expression, from_root in node.reads:
            self.read(expression, from_root, ctx, out)
            self.w.emit(f"if {empty_check(out)}:")
            self.w.depth += 1
            opened += 1
        self.w.emit(f"{out} = None")
        self.w.depth -= opened
        return out

    def template(self, node: Template, ctx: Context) -> str:
        if is_static(node):
            return self.w.route_constant(node)
        ast = template_ast(node.source)
        mark = len(self.w.lines)
        try:
            translator = Translator(self.w, self.env, lambda name: self.jinja_name(name, ctx))
            if node.whole:
                return self._guarded(node, lambda: translator.whole(ast))
            return self._guarded(node, lambda: translator.text(ast))
        except Unsupported:
            del self.w.lines[mark:]
        out = self.w.temp()
        self.w.emit(f"{out} = {self.w.constant(node, 'template')}.run({self.names(ctx)})  # {node.source}")
        return out

    def _guarded(self, node: Template, translate) -> str:
        """Translated template code, with Template.evaluate's error wording."""
        self.w.emit(f"# {node.describe()}")
        self.w.emit("try:")
        with self.w.indented():
            out = translate()
        source = self.w.constant(node.source, "SOURCE")
        where = repr(tuple(node.where))
        self.w.emit("except FilterError as exc:")
        self.w.emit(f"    raise MappingError({where}, str(exc)) from None")
        self.w.emit("except (TypeError, ValueError, ArithmeticError) as exc:")
        self.w.emit(f"    raise MappingError({where}, f'template {{{source}!r}} failed: {{exc}}') from None")
        return out

    def jinja_name(self, name: str, ctx: Context) -> str:
        if name == "settings":
            return "settings"
        if name == "vars":
            return "vars"
        if name == "item" and ctx.item is not None:
            return ctx.item
        return f"{self.root}.get({name!r}, _U)"

    # --- structure
    def object(self, node: Object, ctx: Context) -> str:
        out = self.w.temp("obj")
        self.w.emit(f"{out} = {{}}")
        keep = (lambda v: f"{v} is not None and not (isinstance({v}, _EMPTIABLE) and not {v})") if node.drop_empty \
            else (lambda v: f"{v} is not None")
        if node.merge is not None:
            merged = self.value(node.merge, ctx)
            omit = self.w.constant(node.omit, "OMIT")
            key, item = self.w.temp("k"), self.w.temp("x")
            self.w.emit(f"if isinstance({merged}, dict):")
            self.w.emit(f"    for {key}, {item} in {merged}.items():")
            self.w.emit(f"        if {key} not in {omit} and {keep(item)}:")
            self.w.emit(f"            {out}[{key}] = {item}")
            self.w.emit(f"elif {merged} is not None:")
            self.w.emit(f"    raise MappingError({tuple(node.where)!r}, "
                        f"'@merge expected an object, got ' + describe_type({merged}))")
        for key, child in node.fields:
            if type(child) is Literal:
                if child.value is not None and not (node.drop_empty and _is_empty(child.value)):
                    self.w.emit(f"{out}[{key!r}] = {self.literal(child.value)}")
                continue
            value = self.value(child, ctx)
            if type(child) is Object and not node.drop_empty:
                self.w.emit(f"{out}[{key!r}] = {value}")  # an object is never null
                continue
            self.w.emit(f"if {keep(value)}:")
            self.w.emit(f"    {out}[{key!r}] = {value}")
        return out

    def array(self, node: Array, ctx: Context) -> str:
        out = self.w.temp("arr")
        self.w.emit(f"{out} = []")
        for child in node.items:
            value = self.value(child, ctx)
            self.w.emit(f"if {value} is not None:")
            self.w.emit(f"    {out}.append({value})")
        return out

    def modified(self, node: Modified, ctx: Context) -> str:
        value = self.value(node.inner, ctx)
        out = self.w.temp()
        self.w.emit(f"{out} = {value}")
        where = repr(tuple(node.where))
        for name, fn, args in node.filters:
            message = f"filter '{name}' failed: "
            self.w.emit(f"# filter {name}")
            self.w.emit("try:")
            with self.w.indented():
                values = [self.value(arg, ctx) for arg in args]
                call = ", ".join([out] + values)
                present = getattr(fn, "when_present", None)  # a built-in: null in, null out
                if present is None:
                    self.w.emit(f"{out} = {self.w.constant(fn, 'filter_' + name)}({call})")
                else:
                    self.w.emit(f"if {out} is not None:")
                    self.w.emit(f"    {out} = {self.w.constant(present, 'filter_' + name)}({call})")
            self.w.emit("except FilterError as exc:")
            self.w.emit(f"    raise MappingError({where}, str(exc)) from None")
            self.w.emit("except (TypeError, ValueError, ArithmeticError) as exc:")
            self.w.emit(f"    raise MappingError({where}, {message!r} + str(exc)) from None")
        if node.default is not None:
            self.w.emit(f"if {empty_check(out)}:")
            with self.w.indented():
                default = self.value(node.default, ctx)
                self.w.emit(f"{out} = {default}")
        return out

    def condition(self, node: Condition, ctx: Context) -> str:
        test, out = self.w.temp("test"), self.w.temp()
        self.w.emit(f"# if {node.source}")
        self.read(node.expression, node.from_root, ctx, test)
        self.w.emit(f"if {test} is None or {test} is False or (isinstance({test}, _EMPTIABLE) and not {test}):")
        with self.w.indented():
            if node.otherwise is None:
                self.w.emit(f"{out} = None")
            else:
                self.w.emit(f"{out} = {self.value(node.otherwise, ctx)}")
        self.w.emit("else:")
        with self.w.indented():
            if node.then is None:
                self.w.emit(f"{out} = None")
            else:
                self.w.emit(f"{out} = {self.value(node.then, ctx)}")
        return out

    def each(self, node: Each, ctx: Context) -> str:
        items = self.value(node.source, ctx)
        out, item = self.w.temp("each"), self.w.temp("item")
        self.w.emit(f"if {items} is None:")
        self.w.emit(f"    {out} = None")
        self.w.emit(f"elif not isinstance({items}, list):")
        self.w.emit(f"    raise MappingError({tuple(node.where)!r}, '@each expected a list, got ' + describe_type({items}))")
        self.w.emit("else:")
        with self.w.indented():
            self.w.emit(f"{out} = []")
            self.w.emit(f"for {item} in {items}:")
            with self.w.indented():
                mapped = self.value(node.mapper, Context(item, item))
                self.w.emit(f"if {mapped} is not None:")
                self.w.emit(f"    {out}.append({mapped})")
        return out

    def function_call(self, node: Function, ctx: Context) -> str:
        args = self.value(node.args, ctx) if node.args is not None else "None"
        out = self.w.temp()
        fn = self.w.constant(node.fn, "function")
        message = f"function '{node.name}' failed: "
        self.w.emit("try:")
        self.w.emit(f"    {out} = {fn}(**({args} or {{}}))")
        self.w.emit("except MappingError:")
        self.w.emit("    raise")
        self.w.emit("except Exception as exc:")
        self.w.emit(f"    raise MappingError({tuple(node.where)!r}, {message!r} + str(exc)) from None")
        return out


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, EMPTIABLE) and len(value) == 0)


def plain_path(parsed: dict) -> list | None:
    """['a', 'b'] for ``a.b``, [] for ``@``, None for anything that needs JMESPath itself."""
    kind = parsed["type"]
    if kind == "current":
        return []
    if kind == "field":
        return [parsed["value"]]
    if kind == "subexpression":
        steps = []
        for child in parsed["children"]:
            inner = plain_path(child)
            if inner is None:
                return None
            steps += inner
        return steps
    return None


def or_of_plain_paths(parsed: dict) -> list | None:
    """[['a'], ['b', 'c']] for ``a || b.c``; None otherwise."""
    if parsed["type"] == "or_expression":
        left, right = (or_of_plain_paths(child) for child in parsed["children"])
        return None if left is None or right is None else left + right
    steps = plain_path(parsed)
    return None if steps is None else [steps]


class CompiledCode:
    """The source of one generated function, its namespace, and the nodes its route constants come from."""

    def __init__(self, name: str, source: str, namespace: dict, route_nodes: list):
        self.name, self.source, self.route_nodes = name, source, route_nodes
        code = compile(source, f"<eventmap {name}>", "exec")
        exec(code, namespace)
        self.function = namespace[name]

    def constants(self, settings: dict) -> list:
        """The route's constants; raises MappingError as the interpreter would, on first use."""
        scope = Scope({}, settings, {})
        return [node.evaluate(scope) for node in self.route_nodes]


def generate(name: str, doc: str, vars: list, body: Node, root: str = "event") -> CompiledCode:
    """``name(event, settings, K) -> (value of body, vars)``: vars first, in order, then the body."""
    writer = Writer()
    Generator(writer, root).function(name, doc, vars, body)
    return CompiledCode(name, "\n".join(writer.lines) + "\n", writer.namespace, writer.route_nodes)


def generate_values(name: str, doc: str, nodes: list) -> CompiledCode:
    """``name(event, settings, K, vars) -> tuple``: the value of each node, in order."""
    writer = Writer()
    Generator(writer).values_function(name, doc, nodes)
    return CompiledCode(name, "\n".join(writer.lines) + "\n", writer.namespace, writer.route_nodes)


def is_static(node: Node) -> bool:
    """True when a node's value depends on settings alone: a literal, or a template reading only settings."""
    if type(node) is Literal:
        return True
    if type(node) is Template:
        return reads_only_settings(template_ast(node.source), BUILTIN_FILTERS)
    return False
