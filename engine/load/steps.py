"""Compile named steps (a source's lookups, a destination action's steps) from one schema fragment."""
from __future__ import annotations

import jmespath

from ..map.language import Compiler
from ..render.endpoint import compile_endpoint, merge_request
from ..render.reads import operator_vars
from ..steps import LOOKUP_READ, RUN, STEP_READ, Rule, Step, check_plan, mark_fallbacks, step_reads
from .required import compile_required


def compile_steps(specs: dict, compiler: Compiler, path: tuple, defaults: dict | None,
                  sequence: list[str] | None = None, check_reads: bool = True,
                  operator: frozenset = frozenset(), root: str = "steps") -> dict[str, Step]:
    """Every step of ``specs`` (in order); problems go to ``compiler``.

    ``sequence`` is the order steps run in when none asks for another; None means
    every step that is not a fallback, in the order declared (a destination action).
    ``operator``: the vars in scope made from settings alone (a URL keeps them as written).
    ``root``: how later steps read the answers (``steps.NAME``, a source's ``lookups.NAME``).
    """
    pattern = STEP_READ if root == "steps" else LOOKUP_READ
    steps: dict[str, Step] = {}
    reads: dict[str, list] = {}
    for name, spec in specs.items():
        here = path + (name,)
        known_vars = set(compiler.vars)
        step = compile_step(name, spec, compiler, here, defaults, operator)
        compiler.vars = known_vars   # a step's vars are its own
        steps[name] = step
        nodes = [node for _, node in step.vars] + [step.body, *step.endpoint.nodes()]
        mentions = root in str(spec)   # a step that names no answer reads none: no need to walk its nodes
        reads[name] = ([hit for node in nodes if node is not None for hit in step_reads(node, here, pattern)]
                       if mentions else [])
        texts = [(("when",), step.when_text)] + [(("requires", i), text) for i, (text, _, _) in enumerate(step.requires)]
        reads[name] += [(here + key, m.group(1)) for key, text in texts if text for m in pattern.finditer(text)]
        step.reads_answers = bool(reads[name])
        # a rule on the answer reads this step's own answer, and what this step itself may read
        reads[name] += [(here + ("on_answer", i, "when"), m.group(1)) for i, (text, _, _) in enumerate(step.on_answer)
                        for m in pattern.finditer(text) if m.group(1) != name]
    mark_fallbacks(steps)
    order = sequence if sequence is not None else [n for n, s in steps.items() if not s.fallback]
    check_plan(steps, order, path, compiler.report, reads if check_reads else None)
    return steps


def compile_step(name: str, spec: dict, compiler: Compiler, path: tuple, defaults: dict | None,
                 operator: frozenset = frozenset()) -> Step:
    when_text = spec.get("when")
    when = _expression(when_text, compiler, path + ("when",)) if when_text is not None else None
    requires = []
    for i, entry in enumerate(spec.get("requires") or []):
        field, message = (entry, None) if isinstance(entry, str) else (entry["path"], entry.get("message"))
        requires.append((field, _expression(field, compiler, path + ("requires", i)),
                         compiler.value(message, path + ("requires", i, "message")) if message is not None else None))
    variables = []
    for var, raw in (spec.get("vars") or {}).items():
        variables.append((var, compiler.value(raw, path + ("vars", var))))
        compiler.define_var(var)
    endpoint = compile_endpoint(merge_request(defaults, spec.get("request")), compiler, path + ("request",),
                                operator_vars(variables, operator))
    body = compiler.value(spec["body"], path + ("body",)) if "body" in spec else None
    required = compile_required(spec.get("required") or [], compiler, path + ("required",))
    on_status = {str(status): _rule(rule, compiler, path + ("on_status", status))
                 for status, rule in (spec.get("on_status") or {}).items()}
    on_answer = [(entry["when"], _expression(entry["when"], compiler, path + ("on_answer", i, "when")),
                  _rule(entry["then"], compiler, path + ("on_answer", i, "then")))
                 for i, entry in enumerate(spec.get("on_answer") or [])]
    return Step(name, endpoint, when, when_text, requires, variables, body, required, on_status, on_answer)


def _rule(spec: dict, compiler: Compiler, path: tuple) -> Rule:
    """One rule (``{reject: "message"}``, ``{run: create}``...), as on_status and on_answer write it."""
    kind, value = next(iter(spec.items()))
    if kind == RUN:
        return Rule(RUN, target=value)
    if isinstance(value, str):
        return Rule(kind, compiler.value(value, path + (kind,)))
    return Rule(kind)


def _expression(text: str, compiler: Compiler, path: tuple):
    """A condition or an input path, read through the same scopes as every other read (event., steps., ...)."""
    compiled = compiler.jmespath(text, path, path[-1] if isinstance(path[-1], str) else "requires")
    return compiled if compiled is not None else jmespath.compile("`null`")
