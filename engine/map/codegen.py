"""Compile a mapping's node tree into one plain Python function.

Why: walking a node tree and calling JMESPath and Jinja2 for every field of
every event is slow. Most fields are plain reads such as ``traits.email``;
written out as Python (``v = event.get("traits")``...) they cost a fraction of
that. The generated code is the language's only semantics: each node class in
language.py writes its own statements (``Node.emit``) and this module supplies
the writer, the reads, the templates and the function around them. A single
node is evaluated by the code generated for it alone (``evaluator``).

* plain JMESPath paths (``a.b.c``, ``@``) become dict reads; other expressions
  become Python too (jmespath_subset.py), and the few it leaves out (``&expr``)
  call the compiled JMESPath expression; conditions outside generated code (a
  step's ``when``) are ``Expression`` objects whose ``search`` runs the same
  translation;
* templates that read only ``settings`` are rendered once per route and read
  from ``K`` (the route's constants); the others become Python (jinja_subset.py)
  where they can, handing an event to Jinja2 where the translation does not
  decide its data (``Bail``); the rest call Jinja2, compiled once;
* everything else (filters, functions, @each, @merge...) is spelled out.

``eventmap explain --code DEST TYPE`` prints the generated source.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import jmespath

from . import jmespath_subset, operators
from .filters import BUILTIN_FILTERS, FILTERS, FilterError
from .jinja_subset import Bail, Translator, Unsupported, reads_only_settings
from .reads import negation_problem, plain_steps, root_reads
from .runtime import NAMESPACE, Scope, is_truthy
from .templates import environment, template_ast, template_facts

# Node and Template below are language.py's classes: this module does not import it (language.py imports this
# one), it only calls what every node has (emit, static, describe, evaluate, where).
Node = Any
Template = Any


OBJECT_SCOPES = ("event", "vars", "settings")  # always objects in generated code (the event of an action)


class Writer:
    """Lines of Python, fresh local names, and the objects the code refers to."""

    def __init__(self, hoist: bool = True):
        self.hoist = hoist  # False: settings-only templates are computed in place, not read from K
        self.lines: list[str] = []
        self.depth = 1
        self.count = 0
        self.namespace = {**NAMESPACE, "FilterError": FilterError}
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


class Generator:
    """Writes the statements for each kind of node; ``value`` returns the local holding the result."""

    def __init__(self, writer: Writer, root: str = "event"):
        self.w = writer
        self.root = root
        self.env = environment()

    def scope(self, name: str, ctx: Context) -> str:
        """The Python expression for one scope: ``event`` is the function's argument itself (an action's
        event); ``payload``, ``lookups`` and ``items`` are keys of it (sources and envelopes)."""
        if name in ("settings", "vars"):
            return name
        if name == "item" and ctx.item is not None:
            return ctx.item
        if name == "event":
            return self.root
        return f"{self.root}.get({name!r})"

    def scopes(self, names, ctx: Context) -> str:
        """A dict of the scopes a JMESPath expression or a Jinja2 template reads (built where one is used)."""
        return "{" + ", ".join(f"{name!r}: {self.scope(name, ctx)}" for name in sorted(names)) + "}"

    # --- entry point
    def function(self, name: str, doc: str, vars: list, body: Node) -> None:
        """``def name(event, settings, K, given=None)`` returning (body value, vars dict).

        ``given``: the values of the first vars, worked out already for this event (a multi-step
        action's vars, read by a step's ``when`` first); the function computes the rest.
        """
        self.w.lines.append(f"def {name}({self.root}, settings, K, given=None):")
        self.w.emit(repr(doc))
        if vars:
            self.w.emit("vars, skip = ({}, 0) if given is None else (given, len(given))")
        else:
            self.w.emit("vars = {} if given is None else given")
        ctx = Context(self.root, None)
        for i, (var_name, node) in enumerate(vars):
            self.w.emit(f"# vars.{var_name}: {node.describe()}")
            self.w.emit(f"if skip <= {i}:")
            with self.w.indented():
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
        """Emit ``node`` (each node class writes its own code) and return the local holding its value."""
        return node.emit(self, ctx)

    def item_context(self, item: str) -> Context:
        """Inside @each/@map_values: @path and ``item`` read the local ``item``."""
        return Context(item, item)

    def literal(self, value) -> str:
        if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            return repr(value)
        return self.w.constant(value, "LITERAL")

    # --- reads
    def read(self, expression, ctx: Context, out: str) -> None:
        """``out = <JMESPath expression over the scopes>``, as dict reads when it is a plain path."""
        steps = plain_steps(expression.parsed)
        if steps is None:
            mark = len(self.w.lines)
            try:  # jmespath's semantics written as Python (jmespath_subset.py)
                value = jmespath_subset.Translator(self.w, lambda name: self.scope(name, ctx),
                                                  objects={self.scope(name, ctx) for name in OBJECT_SCOPES}
                                                  ).value(expression.parsed)
            except jmespath_subset.Unsupported:
                del self.w.lines[mark:]
            else:
                self.w.emit(f"{out} = {value}")
                return
            reads = self.scopes(set(root_reads(expression.parsed)), ctx)
            self.w.emit(f"{out} = {self.w.constant(expression, 'jmespath')}.search({reads})")
            return
        if steps[0] in OBJECT_SCOPES and len(steps) > 1:  # an action's event, vars and settings are always objects
            self.w.emit(f"{out} = {self.scope(steps[0], ctx)}.get({steps[1]!r})")
            steps = steps[1:]
        else:
            self.w.emit(f"{out} = {self.scope(steps[0], ctx)}")
        for key in steps[1:]:
            self.w.emit(f"{out} = {out}.get({key!r}) if isinstance({out}, dict) else None")

    def template(self, node: Template, ctx: Context) -> str:
        if self.w.hoist and node.static():
            return self.w.route_constant(node)
        ast = template_ast(node.source)
        mark = len(self.w.lines)
        # a template whose code may hand an event to Jinja2 must not call a user's filter twice
        can_bail = not (template_facts(node.source).filters & (set(FILTERS) - BUILTIN_FILTERS))
        try:
            translator = Translator(self.w, self.env, lambda name: self.jinja_name(name, ctx), can_bail)
            return self._guarded(node, ctx, translator, ast)
        except Unsupported:
            del self.w.lines[mark:]
        out = self.w.temp()
        self.w.emit(f"{out} = {self._jinja(node, ctx)}  # {node.source}")
        return out

    def _jinja(self, node: Template, ctx: Context) -> str:
        """The call rendering ``node`` with Jinja2 itself."""
        return f"{self.w.constant(node, 'template')}.run({self.scopes(template_facts(node.source).scopes, ctx)})"

    def _guarded(self, node: Template, ctx: Context, translator: Translator, ast) -> str:
        """Translated template code, with Template.evaluate's error wording; Jinja2 where it bails."""
        self.w.emit(f"# {node.describe()}")
        self.w.emit("try:")
        with self.w.indented():
            out = translator.whole(ast) if node.whole else translator.text(ast)
        if translator.bails:
            self.w.emit(f"except {self.w.constant(Bail, 'Bail')}:  # data the translation leaves to Jinja2")
            self.w.emit(f"    {out} = {self._jinja(node, ctx)}")
        source = self.w.constant(node.source, "SOURCE")
        where = repr(tuple(node.where))
        self.w.emit("except FilterError as exc:")
        self.w.emit(f"    raise MappingError({where}, str(exc)) from None")
        self.w.emit("except Exception as exc:  # a user's filter may raise anything: this event's verdict")
        self.w.emit(f"    raise MappingError({where}, f'template {{{source}!r}} failed: {{exc}}') from None")
        return out

    def jinja_name(self, name: str, ctx: Context) -> str:
        """A scope a translated template reads (the loader refused any other name)."""
        return self.scope(name, ctx)


class CompiledCode:
    """The source of one generated function, its namespace, and the nodes its route constants come from."""

    def __init__(self, name: str, source: str, namespace: dict, route_nodes: list):
        self.name, self.source, self.route_nodes = name, source, route_nodes
        code = compile(source, f"<eventmap {name}>", "exec")
        exec(code, namespace)
        self.function = namespace[name]

    def constants(self, settings: dict) -> list:
        """The route's constants (settings-only values); raises MappingError on the first that fails."""
        scope = Scope({}, settings, {})
        return [node.evaluate(scope) for node in self.route_nodes]


def generate(name: str, doc: str, vars: list, body: Node, root: str = "event") -> CompiledCode:
    """``name(event, settings, K, given=None) -> (value of body, vars)``: vars first, in order (those not
    ``given``), then the body."""
    writer = Writer()
    Generator(writer, root).function(name, doc, vars, body)
    return CompiledCode(name, "\n".join(writer.lines) + "\n", writer.namespace, writer.route_nodes)


def generate_values(name: str, doc: str, nodes: list) -> CompiledCode:
    """``name(event, settings, K, vars) -> tuple``: the value of each node, in order."""
    writer = Writer()
    Generator(writer).values_function(name, doc, nodes)
    return CompiledCode(name, "\n".join(writer.lines) + "\n", writer.namespace, writer.route_nodes)


def evaluator(node: Node, in_item: bool):
    """``run(event, settings, vars, item)``: the code generated for one node, on its own (no route constants)."""
    writer = Writer(hoist=False)
    writer.lines.append("def evaluate(event, settings, vars, item):")
    generator = Generator(writer)
    ctx = generator.item_context("item") if in_item else Context("event", None)
    value = generator.value(node, ctx)
    writer.emit(f"return {value}")
    return CompiledCode("evaluate", "\n".join(writer.lines) + "\n", writer.namespace, []).function


class Expression(jmespath.parser.ParsedResult):
    """A compiled JMESPath expression whose ``search`` runs its Python translation (jmespath_subset.py),
    written on first use; jmespath's own interpreter where the translation does not apply.

    What every condition and read outside generated code gets (a step's ``when``, a named action's
    ``when``, ``on_answer`` rules, ``requires``): the same answers, without walking the tree per call.
    """

    def __init__(self, expression: str, parsed: dict):
        super().__init__(expression, parsed)
        self._run: Any = None

    @functools.cached_property
    def negation_problem(self) -> str | None:
        """reads.negation_problem of this expression, worked out once (files repeat their conditions)."""
        return negation_problem(self.expression, self.parsed)

    def search(self, value, options=None):
        if options is not None:
            return super().search(value, options)
        if self._run is None:
            self._run = self._translated()
        return self._run(value)

    def _translated(self):
        writer = Writer(hoist=False)
        writer.lines.append("def search(data):")
        try:
            value = jmespath_subset.Translator(writer, root="data").value(self.parsed)
        except jmespath_subset.Unsupported:
            return super().search
        writer.emit(f"return {value}")
        return CompiledCode("search", "\n".join(writer.lines) + "\n", writer.namespace, []).function


def scopes_condition(expression, names: tuple[str, ...]):
    """``holds(*scopes)``: whether ``expression`` is true (runtime.is_truthy) on the scopes given in the order of
    ``names``, each an object: what searching ``{name: scope...}`` answers, without making that object."""
    writer = Writer(hoist=False)
    writer.lines.append(f"def holds({', '.join(names)}):")
    try:
        value = jmespath_subset.Translator(writer, lambda name: name if name in names else "None",
                                           objects=set(names)).value(expression.parsed)
    except jmespath_subset.Unsupported:
        return lambda *scopes: is_truthy(expression.search(dict(zip(names, scopes))))
    if jmespath_subset.boolean(expression.parsed):
        writer.emit(f"return {value}")
    else:
        writer.emit(f"return {value} is not False and not ({empty_test(value)})")
    return CompiledCode("holds", "\n".join(writer.lines) + "\n", writer.namespace, []).function


def empty_test(v: str) -> str:
    """runtime.is_empty, written inline in generated code (a call per field costs more than the test); the
    truth test first, so most values are decided without a call."""
    return f"{v} is None or (not {v} and isinstance({v}, _EMPTIABLE))"


@functools.lru_cache(maxsize=8192)
def compile_expression(text: str) -> Expression:
    """``jmespath.compile`` (its errors), as an Expression; one per text (jmespath's own cache keeps 128), shared
    by every file that writes it: its translation is made once, on first use."""
    return Expression(text, jmespath.compile(text).parsed)


# filters and tests whose answer depends on their input alone: the built-in filters and the operators' own
PURE_NAMES = BUILTIN_FILTERS | set(operators.TESTS) | set(operators.FILTERS)


@functools.lru_cache(maxsize=4096)
def reads_only_settings_template(source: str) -> bool:
    """True when a template's value depends on settings alone (so it can be rendered once per route)."""
    return reads_only_settings(template_ast(source), PURE_NAMES)
