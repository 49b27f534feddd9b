"""Rewrite destination mappings written before explicit scopes: ``traits.email`` -> ``event.traits.email``.

Why: reads now name their scope (``event.``, ``item.``, ``settings.``, ``vars.``),
and the old forms are load errors. This rewrites a file's text in place, scalar
by scalar, so comments, anchors and layout stay as they were:

* ``@path``/``@if``/``@each``/``@merge``/``@map_values`` expressions: a root
  field gets ``event.`` (``item.`` inside ``@each``/``@map``); ``$.x`` becomes
  ``event.x`` and ``@`` becomes ``event`` (or ``item``); function names, filter
  conditions (``[?...]``) and what follows a pipe are left alone;
* templates: every name that is not ``settings``, ``vars``, ``item``, a Jinja2
  global or a name the template defines gets ``event.``;
* ``required`` (output paths), envelopes and batch requests (which read
  ``items``) and sources are left as they are.

Usage: ``python -m engine.map.migrate mappings/destinations/acme.yaml ...``
(``--check`` lists the files that would change). It exits 1 when anything is left for a person
(each listed once on stderr), or with ``--check`` when a file would change. ``--python`` rewrites, best
effort, the mapping YAML written as string literals in Python files (tests):
f-strings and strings it cannot parse are listed for a person to finish. Run it once per file: the old
``event`` (a track's name) and the new scope look the same, so a second run
would prefix again. Block scalars (``|``, ``>``) are reported, not rewritten.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import jmespath
import jmespath.lexer
import yaml
from jinja2 import TemplateSyntaxError, nodes
from jmespath.exceptions import JMESPathError

from .reads import negation_problem, root_reads
from .templates import environment

KEEP = frozenset({"settings", "vars"})
READ_KEYS = ("@path", "@if", "@each", "@merge", "@map_values")
ACTION_KEYS = {"body", "request", "vars", "required", "batch", "description", "type", "events", "when"}


def template(source: str, keep: frozenset[str] = KEEP) -> str:
    """A template with ``event.`` before each top-level name it reads that is not a scope."""
    env = environment()
    ast = env.parse(source)
    stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    stored |= {n.name for n in ast.find_all(nodes.Macro)}
    reads = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    rewrite = reads - keep - stored - set(env.globals) - {"loop", "caller", "namespace"}
    if not rewrite:
        return source
    tokens = list(env.lexer.tokeniter(source, None))
    significant = [i for i, token in enumerate(tokens) if token[1] != "whitespace"]
    position = {i: k for k, i in enumerate(significant)}
    out = []
    for i, (_, kind, value) in enumerate(tokens):
        if kind == "name" and value in rewrite:
            k = position[i]
            before = tokens[significant[k - 1]][2] if k > 0 else None
            after = tokens[significant[k + 1]][2] if k + 1 < len(significant) else None
            if before not in (".", "|", "is") and after != "=":  # not an attribute, filter, test or keyword
                value = "event." + value
        out.append(value)
    return "".join(out)


def expression(text: str, scope: str, keep: frozenset[str] = KEEP) -> str:
    """A JMESPath read with ``scope.`` before each root field (``$.x`` -> ``event.x``, ``@`` -> the scope).

    A negated root field keeps its meaning: ``!userId`` becomes ``!(event.userId)``, since ``!event.userId``
    would negate the scope (map/reads.negation_problem).
    """
    if text == "$":
        return "event"
    if text.startswith("$."):
        return expression(text[2:], "event", keep)
    tokens = list(jmespath.lexer.Lexer().tokenize(text))
    out, last, brackets, piped, previous = [], 0, [], False, None
    for index, token in enumerate(tokens):
        kind = token["type"]
        if kind == "eof":
            break
        if kind == "filter":
            brackets.append(True)
        elif kind == "lbracket":
            brackets.append(False)
        elif kind == "rbracket" and brackets:
            brackets.pop()
        elif kind == "pipe":
            piped = True
        root = not any(brackets) and not piped and previous not in ("dot", "expref")
        function = tokens[index + 1]["type"] == "lparen"
        negated = previous == "not"
        if root and kind in ("unquoted_identifier", "quoted_identifier") and token["value"] not in keep \
                and not function:
            out.append(text[last:token["start"]] + ("(" if negated else "") + scope + ".")
            last = token["start"]
            if negated:  # the lexer's "end" is not always right: the next token's start, less spaces
                end = len(text[:tokens[index + 1]["start"]].rstrip())
                out.append(text[last:end] + ")")
                last = end
        elif root and kind == "current":
            out.append(text[last:token["start"]] + (f"({scope})" if negated else scope))
            last = token["end"]
        previous = kind
    out.append(text[last:])
    new = "".join(out)
    left = set(root_reads(jmespath.compile(new).parsed)) - keep - {scope, "event", "item"}
    if left:
        raise ValueError(f"could not rewrite {text!r} (still reads {', '.join(sorted(left))})")
    return new


class Rewrite:
    """The edits to one YAML text: (start, end, new scalar text), applied from the end."""

    def __init__(self, text: str):
        self.text = text
        self.edits: set[tuple[int, int, str]] = set()  # a set: anchors make a node reachable twice
        self.notes: dict[str, None] = {}  # what is left for a person, each once (aliases repeat a node)

    @property
    def skipped(self) -> list[str]:
        return list(self.notes)

    def scalar(self, node, new: str) -> None:
        if new == node.value:
            return
        if node.style in ("|", ">"):
            self.notes[f"line {node.start_mark.line + 1}: a block scalar; write {new!r} yourself"] = None
            return
        if node.style == "'":
            shown = "'" + new.replace("'", "''") + "'"
        elif node.style is None and not any(c in new for c in ",[]{}#'\"") and ": " not in new \
                and yaml.safe_load(new) == new:
            shown = new
        else:
            shown = json.dumps(new, ensure_ascii=False)
        self.edits.add((node.start_mark.index, node.end_mark.index, shown))

    def read(self, node, scope: str) -> None:
        """A JMESPath read rewritten; one that already negated a name alone is kept as it was, and noted."""
        self.scalar(node, expression(node.value, scope))
        try:
            problem = negation_problem(node.value, jmespath.compile(node.value).parsed)
        except JMESPathError:  # "$.x": expression() made it a read of event
            problem = None
        if problem:
            self.notes[f"line {node.start_mark.line + 1}: {problem.split(': write ')[0]}; "
                       "it meant that before too: write what is meant"] = None

    def value(self, node, in_item: bool) -> None:
        if isinstance(node, yaml.ScalarNode):
            if node.tag.endswith(":str") and ("{{" in node.value or "{%" in node.value):
                self.scalar(node, template(node.value, KEEP | ({"item"} if in_item else set())))
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                self.value(child, in_item)
        elif isinstance(node, yaml.MappingNode):
            for key_node, child in node.value:
                key = key_node.value
                if key == "@literal":
                    continue
                if key == "@map":
                    self.value(child, True)
                elif key in READ_KEYS and not isinstance(child, yaml.MappingNode):
                    for read in child.value if isinstance(child, yaml.SequenceNode) else [child]:
                        if isinstance(read, yaml.ScalarNode) and read.tag.endswith(":str"):
                            self.read(read, "item" if in_item else "event")
                else:
                    self.value(child, in_item)

    def action(self, node) -> None:
        for key_node, child in node.value:
            if key_node.value in ("body", "request", "vars"):
                self.value(child, False)
            elif key_node.value == "when" and isinstance(child, yaml.ScalarNode):
                self.read(child, "event")

    def result(self) -> str:
        text = self.text
        for start, end, new in sorted(self.edits, reverse=True):
            text = text[:start] + new + text[end:]
        return text


def migrate_text(text: str) -> tuple[str, list[str]]:
    """A destination file, or a fragment of one (an action's keys, a body, a template), rewritten."""
    if text.lstrip().startswith(("{{", "{%")):
        return template(text), []
    root = yaml.compose(text)
    rewrite = Rewrite(text)
    if isinstance(root, yaml.MappingNode):
        keys = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        if "actions" in keys:
            for _, action in keys["actions"].value:
                rewrite.action(action)
            for key_node, child in keys.get("defaults", yaml.MappingNode("", [])).value:
                if key_node.value == "request":
                    rewrite.value(child, False)
        elif {"envelope", "batch"} & set(keys):
            pass  # envelopes and batch requests read items, settings and vars: nothing changes
        elif set(keys) <= ACTION_KEYS and {"body", "request", "vars", "required"} & set(keys):
            rewrite.action(root)
        else:
            rewrite.value(root, False)
    elif root is not None:
        rewrite.value(root, False)
    return rewrite.result(), rewrite.skipped


MARKERS = ("@path", "{{", "{%", "@if", "@each", "@merge", "@map_values")


def _literal(value: str, original: str) -> str:
    """``value`` written as a Python literal in the style (prefix, quotes) of ``original``."""
    prefix = ""
    while original[0] in "bBuU":
        prefix, original = prefix + original[0], original[1:]
    if original[0] in "rR" or original[0] in "fF":
        raise ValueError("a raw string or f-string")
    quote = next(q for q in ('"""', "'''", '"', "'") if original.startswith(q))
    if len(quote) == 3:
        body = value.replace("\\", "\\\\").replace(quote, quote[0] + "\\" + quote[0] * 2)
        if original[3:5] == "\\\n":  # the text started after a line continuation: keep it
            body = "\\\n" + body
        return prefix + quote + body + quote
    return prefix + quote + value.replace("\\", "\\\\").replace("\n", "\\n").replace(quote, "\\" + quote) + quote


def migrate_python(source: str) -> tuple[str, list[str]]:
    """Python source with each string literal that holds mapping YAML rewritten; and what was left alone."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(line: int, column: int) -> int:  # ast columns count UTF-8 bytes
        return offsets[line - 1] + len(lines[line - 1].encode()[:column].decode())

    in_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    edits, notes = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.Constant) and any(m in str(v.value) for m in MARKERS)
                                                  for v in node.values):
            notes.append(f"line {node.lineno}: an f-string: rewrite it by hand")
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in in_fstrings \
                or not any(marker in node.value for marker in MARKERS):
            continue
        assert node.end_lineno is not None and node.end_col_offset is not None
        start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
        try:
            new, skipped = migrate_text(node.value)
            shown = _literal(new, source[start:end]) if new != node.value else None
        except (yaml.YAMLError, ValueError, TypeError, TemplateSyntaxError) as exc:
            notes.append(f"line {node.lineno}: not rewritten ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            continue
        notes += [f"line {node.lineno}: {note}" for note in skipped]
        if shown is not None:
            if ast.literal_eval(shown) != new:
                notes.append(f"line {node.lineno}: could not write the new text as a literal")
                continue
            edits.append((start, end, shown))
    for start, end, shown in sorted(edits, reverse=True):
        source = source[:start] + shown + source[end:]
    return source, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.map.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="list the files that would change; write nothing")
    parser.add_argument("--python", action="store_true", help="the files are Python: rewrite the YAML in their strings")
    args = parser.parse_args(argv)
    changed = undone = 0
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        try:
            new, skipped = migrate_python(text) if args.python else migrate_text(text)
        except (yaml.YAMLError, ValueError, SyntaxError) as exc:
            sys.stderr.write(f"{path}: not rewritten: {exc}\n")
            undone += 1
            continue
        for note in dict.fromkeys(skipped):
            sys.stderr.write(f"{path}: {note}\n")
        undone += len(set(skipped))
        if new != text:
            changed += 1
            sys.stdout.write(f"{path}\n")
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if undone:
        sys.stderr.write(f"{undone} thing{'s' if undone > 1 else ''} left to do by hand (listed above)\n")
    return 1 if undone or (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
