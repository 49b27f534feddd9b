"""Read a YAML file into plain data while remembering where each value sits.

Mapping errors must point at ``file:line``. PyYAML's node tree knows the line
of every key and value; we keep a table from JSON path to line next to the
constructed data, so later checks can work on plain dicts and still report
the line. Most files have no problem: the table is made when first asked for.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml import MappingNode, ScalarNode, SequenceNode

from ..problems import EventmapError, Problem

PathKey = tuple  # a JSON path as a tuple of keys and list indexes


@dataclass
class YamlDocument:
    file: str
    data: Any   # what the YAML holds; its shape is checked against a schema before use
    _lines: dict | None = field(default=None, compare=False)  # PathKey -> 1-based line; see lines
    text: str | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> dict:
        """Found from ``text`` the first time a problem needs a line: parsing a file
        again now and then costs less than indexing every node of every file."""
        if self._lines is None:
            self._lines = _lines_of(self.text) if self.text is not None else {}
        return self._lines

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: PathKey, message: str, severity: str = "error") -> Problem:
        return Problem(format_path(path), message, self.file, self.line_of(path), severity)

    def located(self, problems: list[Problem]) -> list[Problem]:
        """Problems found after loading (a destination's settings, say), given this file and the line of the
        key their dotted path names, as every other problem in the file has."""
        return [replace(p, file=self.file, line=self.line_of(tuple(p.path.split(".")))) if p.line is None else p
                for p in problems]


def format_path(path: PathKey) -> str:
    """('actions', 'track', 'body', 'products', 0) -> 'actions.track.body.products[0]'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def load_yaml(path: Path, display_name: str | None = None) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse one file; a syntax error or duplicate key becomes a Problem, not an exception."""
    name = display_name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem("", f"cannot read file: {exc}", name)]
    return parse_yaml(text, name)


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE, _VALUE = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"

# libyaml (PyYAML's C loader) reads a file about ten times faster: loading 300 destination files must
# take under a second. A file it refuses is read again by the pure-Python loader, whose messages we keep.
_FAST_LOADER: Any = None
if hasattr(yaml, "CSafeLoader"):
    class _CLoader(yaml.CSafeLoader):
        """libyaml calls back into Python three times per node; these answer as SafeLoader's resolver does, sooner.

        SafeLoader's ``resolve`` looks attributes up through the loader's classes
        and builds a list on every call: an eighth of parsing. Same table, same
        order (resolvers for the first character, then those for any). The
        descend/ascend calls only serve path resolvers, which SafeLoader has none of.
        """

        def resolve(self, kind, value, implicit):
            if kind is ScalarNode:
                if implicit[0]:  # plain and untagged: YAML 1.1's implicit types
                    resolvers = self.yaml_implicit_resolvers
                    for tag, regexp in resolvers.get(value[:1], ()):
                        if regexp.match(value):
                            return tag
                    for tag, regexp in resolvers.get(None, ()):
                        if regexp.match(value):
                            return tag
                return _STR
            return _MAP if kind is MappingNode else _SEQ

        def descend_resolver(self, current_node, current_index):
            pass

        def ascend_resolver(self):
            pass

    _FAST_LOADER = _CLoader


def parse_yaml(text: str, name: str) -> tuple[YamlDocument | None, list[Problem]]:
    with _collector_paused():
        if _FAST_LOADER is not None:
            try:
                return _parse(text, name, _FAST_LOADER)
            except yaml.YAMLError:
                pass
        return _parse(text, name, yaml.SafeLoader)


@contextmanager
def _collector_paused():
    """Keep Python's cycle collector from walking a node tree that lives only until the data is built.

    PyYAML makes several tracked objects per YAML node (the node, its marks,
    key/value pairs). While a file is parsed the collector would walk them
    again and again and promote them to the old generation, which brings the
    next full collection sooner: a tenth or more of the time to load 300 files.
    A node tree holds no cycles (short of a recursive alias, which the
    collector frees later), so there is nothing for it to find meanwhile.
    """
    if not gc.isenabled():  # already paused, by the caller or another thread
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(text: str, name: str, loader_class) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse with ``loader_class``; with the C loader a YAML error propagates (the caller asks the other)."""
    fast = loader_class is not yaml.SafeLoader
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [Problem("", "the file is empty", name, 1)]
        too_big = _expanded_too_far(node) if "*" in text else None   # no alias, no expansion to count
        if too_big is not None:
            return None, [Problem("", f"invalid YAML: anchors and aliases expand this value to over {MAX_NODES:,} "
                                      "values (an alias bomb?); write the values out, or use fewer aliases",
                                  name, too_big.start_mark.line + 1)]
        data, lines, problems = _construct(loader, node, name, fast)
    except yaml.MarkedYAMLError as exc:
        if fast:
            raise
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, [Problem("", f"invalid YAML: {what}", name, line)]
    except yaml.YAMLError as exc:
        if fast:
            raise
        return None, [Problem("", f"invalid YAML: {exc}", name)]
    except BadValue as exc:
        return None, [Problem("", f"invalid YAML: {exc}", name, exc.line)]
    except RecursionError:  # PyYAML's own path (a file with merge keys) meets a recursive alias
        return None, [Problem("", "invalid YAML: an anchor is used inside itself (a recursive alias)", name)]
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:  # ... or a value it cannot read
        return None, [Problem("", f"invalid YAML: a value cannot be read: {exc}", name)]
    finally:
        loader.dispose()
    return YamlDocument(name, data, lines, text), problems


MAX_NODES = 100_000  # values a file may hold once its aliases are expanded; the largest shipped file has 434


def _expanded_too_far(root):
    """The first collection node (deepest first) whose value, aliases expanded, holds over MAX_NODES values.

    An alias is the anchored node itself in PyYAML's tree, so ten levels of ten
    aliases each are about a hundred nodes that every later walk (checks, line
    tables, compiling) expands to ten billion. Each node's expanded size is counted once,
    children first, without recursion; a recursive alias counts once here and is
    reported by the loader as it always was.
    """
    size: dict[int, int] = {}
    started: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            total = 1 + sum(size.get(id(child), 1) for child in _children(node))  # unfinished: recursive, 1
            size[id(node)] = total
            if total > MAX_NODES:
                return node
        elif id(node) not in started:
            started.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if not isinstance(child, ScalarNode))
    return None


def _children(node) -> list:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return node.value
    return []


def _construct(loader, node, name: str, fast: bool) -> tuple[object, dict | None, list[Problem]]:
    """The data, its line table (None: found later, if ever needed) and the duplicate keys."""
    if fast:
        try:
            return _Builder(loader).build(node), None, []
        except _Unusual:
            loader.constructed_objects = {}  # start again from the nodes, which the builder left as they were
    # Index before constructing: construction folds `<<` merges into the node,
    # and a key that overrides a merged one is not a duplicate.
    lines: dict = {}
    problems: list[Problem] = []
    _index(node, (), lines, problems, name)
    return loader.construct_document(node), lines, problems


def _lines_of(text: str) -> dict:
    """The line table of a document the builder read (with the fast loader, without a duplicate key)."""
    loader = _FAST_LOADER(text)
    try:
        lines: dict = {}
        _index(loader.get_single_node(), (), lines, [], "")
        return lines
    finally:
        loader.dispose()


def _index(node, path, lines, problems, name) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key == "<<":
                continue  # merged keys keep the lines of the anchor they come from
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(format_path(path + (key,)),
                                        f"duplicate key '{key}' (first on line {seen[key]})", name, line))
            seen.setdefault(key, line)
            lines[path + (key,)] = line
            _index(value_node, path + (key,), lines, problems, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), lines, problems, name)


class _Unusual(Exception):
    """The document has YAML the builder leaves to PyYAML (merge keys, other collection tags...)."""


class BadValue(EventmapError):
    """YAML that parses but cannot become data, at a line."""

    def __init__(self, node, message: str):
        super().__init__(message)
        self.line = node.start_mark.line + 1


_BUILDING = object()  # in built while a collection's own items are built


class _Builder:
    """Build the data from the node tree: what ``construct_document`` gives, several times faster.

    Most values are strings, mappings and lists: the builder takes those
    straight from the nodes and leaves every other scalar (numbers, booleans,
    null, dates...) to the loader's own constructor, so values stay
    SafeLoader's. An alias gets the one shared object, as with PyYAML.
    Anything else (a key given twice, merge keys, other collection tags...)
    raises _Unusual before any node is changed: the caller then takes the two
    steps, which report duplicates with their lines.
    """

    def __init__(self, loader):
        self.loader = loader
        self.built: dict = {}  # collection node -> its object, for aliases

    # Most values are plain strings: build() is called for the others only.

    def build(self, node):
        if isinstance(node, ScalarNode):
            return node.value if node.tag == _STR else self.scalar(node)
        if node in self.built:  # an alias, whose anchor was built first
            if self.built[node] is _BUILDING:
                raise BadValue(node, "an anchor is used inside itself (a recursive alias)")
            return self.built[node]
        self.built[node] = _BUILDING
        data: Any
        if node.tag == _MAP and isinstance(node, MappingNode):
            data = self.mapping(node)
        elif node.tag == _SEQ and isinstance(node, SequenceNode):
            data = [item.value if item.tag == _STR and isinstance(item, ScalarNode) else self.build(item)
                    for item in node.value]
        else:
            raise _Unusual
        self.built[node] = data
        return data

    def scalar(self, node):
        """A number, boolean, null or date, as SafeLoader reads it; a value it cannot read is a BadValue."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError, AttributeError) as exc:  # 2024-02-30; !!timestamp nope
            raise BadValue(node, f"{node.value!r} cannot be read as {node.tag.rsplit(':', 1)[-1]}: {exc}") from None

    def mapping(self, node) -> dict:
        mapping = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.value == "<<" or key_node.tag in (_MERGE, _VALUE):
                raise _Unusual
            key = key_node.value if key_node.tag == _STR else self.scalar(key_node)
            if value_node.tag == _STR and isinstance(value_node, ScalarNode):
                mapping[key] = value_node.value
            else:
                mapping[key] = self.build(value_node)
        if len(mapping) != len(node.value):
            raise _Unusual  # a key given twice (or two that construct equal, like 1 and 0x1)
        return mapping
