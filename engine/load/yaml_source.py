"""Read a YAML file into plain data while remembering where each value sits.

Mapping errors must point at ``file:line``. PyYAML's node tree knows the line
of every key and value; we keep a table from JSON path to line next to the
constructed data, so later checks can work on plain dicts and still report
the line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..problems import Problem

PathKey = tuple  # a JSON path as a tuple of keys and list indexes


@dataclass
class YamlDocument:
    file: str
    data: object
    lines: dict = field(default_factory=dict)  # PathKey -> 1-based line

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


# libyaml (PyYAML's C loader) reads a file about ten times faster: loading 300 destination files must
# take under a second. A file it refuses is read again by the pure-Python loader, whose messages we keep.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def parse_yaml(text: str, name: str) -> tuple[YamlDocument | None, list[Problem]]:
    if _FAST_LOADER is not None:
        try:
            return _parse(text, name, _FAST_LOADER)
        except yaml.YAMLError:
            pass
    return _parse(text, name, yaml.SafeLoader)


def _parse(text: str, name: str, loader_class) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse with ``loader_class``; with the C loader a YAML error propagates (the caller asks the other)."""
    fast = loader_class is not yaml.SafeLoader
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [Problem("", "the file is empty", name, 1)]
        # Index before constructing: construction folds `<<` merges into the node,
        # and a key that overrides a merged one is not a duplicate.
        lines: dict = {}
        problems: list[Problem] = []
        _index(node, (), lines, problems, name)
        data = loader.construct_document(node)
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
    finally:
        loader.dispose()
    return YamlDocument(name, data, lines), problems


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
