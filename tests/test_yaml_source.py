"""With libyaml, parse_yaml builds the data itself and finds lines when first asked: exactly what PyYAML gives.

Each case is parsed twice, with libyaml (the builder) and with the pure-Python
loader alone (the reference, PyYAML's construct_document): same data, same
sharing of aliased objects, same lines, same problems.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import yaml

from engine.load import yaml_source
from engine.load.yaml_source import load_yaml, parse_yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "mappings").rglob("*.yaml"))

TRICKY = {
    "scalars": """\
        str: hello
        quoted: "123"
        single: 'yes'
        ints: [0, -17, +5, 1_000, 0x1F, 0o17, 017, 0b101, 1:30, 0x_1_f]
        floats: [1.5, -0.5e+3, 6.8523015e+5, 1_0.5, .5, 190:20:30.15]
        specials: [.inf, -.Inf, +.INF, .nan, .NaN]
        nulls: [null, Null, NULL, ~, ]
        empty:
        bools: [yes, No, TRUE, false, on, OFF, y, n, True]
        dates: [2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10, 2002-12-14T00:00:00Z]
        binary: !!binary aGVsbG8=
        tagged: [!!str 12, !!int "12", !!float "1", !!bool "yes", !!null "", !!str ~]
        block: |
          two
          lines
        folded: >
          one
          line
        keys: {1: int, 1.5: float, true: bool, null: none, 2001-12-14: date, "2": str}
        """,
    "near misses of implicit types": """\
        - [1e3, 1.0e+3, 1.0e3, 0b_1, -0, +0x_ff, 1_000:30, 0xG, 08, 09.5, 1__0]
        - [.Inf, .inF, -.nan, '.nan', ~x, nullx, "null", Yes, YES, yES, oN, yes!, n]
        - [2001-1-1, 2001-01-01T00:00:00, 2001-01-01 00:00:00.5 +1, 20010101, 2001-01-01x]
        - [<<x, =x, '', "", ' ', ! 12, ! true, !!str yes]
        - {<<x: 1, =x: 2, yes: 3, null: 4, 0x10: 5, 1.5: 6}
        """,
    "value key": "- =\n",
    "aliases": """\
        base: &base {a: 1, b: [x, y]}
        list: &list [1, {c: 2}]
        again: *base
        inner: {b: *list, s: &s text, t: *s}
        all: [*base, *list, *base]
        """,
    "merges": """\
        base: &base {a: 1, b: 2}
        more: &more {c: 3}
        one: {<<: *base, b: 20}
        two:
          <<: [*base, *more]
          d: 4
        three: &three {<<: *base}
        four: {<<: *three, e: 5}
        """,
    "quoted merge key": """\
        a: {"<<": 1, b: 2}
        """,
    "duplicates": """\
        a: 1
        b:
          c: 1
          c: 2
          d: [x, {e: 1, e: 2}]
        a: 3
        """,
    "duplicates in an alias": """\
        base: &base
          k: 1
          k: 2
        copy: *base
        """,
    "keys that construct equal": """\
        1: a
        0x1: b
        true: c
        """,
    "set and omap": """\
        set: !!set {a, b}
        omap: !!omap [a: 1, b: 2]
        pairs: !!pairs [a: 1, a: 2]
        """,
    "explicit collection tags": """\
        m: !!map {a: 1}
        s: !!seq [1, 2]
        """,
    "complex key": """\
        ? [a, b]
        : 1
        """,
    "list at the top": "- a\n- [b, c]\n- {d: e}\n",
    "scalar at the top": "just text\n",
    "unknown tag": "a: !custom x\n",
    "syntax error": "a: [1, 2}\n",
    "empty": "# nothing\n",
}


def both(text: str, monkeypatch):
    """(libyaml with the builder, the pure-Python loader) results for ``text``."""
    fast = parse_yaml(text, "f.yaml")
    with monkeypatch.context() as m:
        m.setattr(yaml_source, "_FAST_LOADER", None)
        slow = parse_yaml(text, "f.yaml")
    return fast, slow


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN and types compared too (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(k1, k2) and same(a[k1], b[k2]) for k1, k2 in zip(a, b))
    if isinstance(a, (list, set)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(sorted(a) if isinstance(a, set) else a,
                                                                    sorted(b) if isinstance(b, set) else b))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def sharing(data) -> list:
    """Which positions hold the same container object: the aliasing PyYAML gives."""
    first: dict = {}
    out = []

    def walk(value, path):
        if isinstance(value, (dict, list)):
            out.append((path, first.setdefault(id(value), path)))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                walk(item, path + (repr(key),))
    walk(data, ())
    return out


def assert_same(fast, slow):
    (fast_doc, fast_problems), (slow_doc, slow_problems) = fast, slow
    assert [str(p) for p in fast_problems] == [str(p) for p in slow_problems]
    assert (fast_doc is None) == (slow_doc is None)
    if fast_doc is not None:
        assert same(fast_doc.data, slow_doc.data)
        assert sharing(fast_doc.data) == sharing(slow_doc.data)
        assert fast_doc.lines == slow_doc.lines


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_parse_as_pyyaml_does(path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    fast, slow = both(text, monkeypatch)
    assert fast[1] == []
    assert same(fast[0].data, yaml.safe_load(text))
    assert_same(fast, slow)


@pytest.mark.parametrize("name", TRICKY)
def test_tricky_yaml_parses_as_pyyaml_does(name, monkeypatch):
    text = textwrap.dedent(TRICKY[name])
    fast, slow = both(text, monkeypatch)
    assert_same(fast, slow)
    if fast[0] is not None:
        assert same(fast[0].data, yaml.safe_load(text))


def test_yaml_1_1_scalars():
    data = parse_yaml(textwrap.dedent(TRICKY["scalars"]), "f.yaml")[0].data
    assert data["ints"] == [0, -17, 5, 1000, 31, "0o17", 15, 5, 90, 31]
    assert data["bools"] == [True, False, True, False, True, False, "y", "n", True]
    assert data["nulls"] == [None] * 4 and data["empty"] is None
    assert data["specials"][:3] == [math.inf, -math.inf, math.inf]
    assert data["quoted"] == "123" and data["single"] == "yes"
    # true == 1: the first key stays, the later value wins, as in a dict
    assert list(data["keys"]) == [1, 1.5, None, data["dates"][0], "2"] and data["keys"][1] == "bool"
    assert type(next(iter(data["keys"]))) is int


def test_aliases_share_one_object():
    data = parse_yaml(textwrap.dedent(TRICKY["aliases"]), "f.yaml")[0].data
    assert data["again"] is data["base"] and data["all"][2] is data["base"]
    assert data["inner"]["b"] is data["list"] and data["all"][1] is data["list"]


def test_merges_and_their_lines():
    doc, problems = parse_yaml(textwrap.dedent(TRICKY["merges"]), "f.yaml")
    assert problems == []
    assert doc.data["one"] == {"a": 1, "b": 20}
    assert doc.data["two"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert doc.data["four"] == {"a": 1, "b": 2, "e": 5}
    assert doc.line_of(("two", "d")) == 6
    assert ("two", "a") not in doc.lines  # merged keys keep the lines of their anchor


def test_duplicate_keys_are_reported_with_lines_at_every_place():
    _, problems = parse_yaml(textwrap.dedent(TRICKY["duplicates"]), "f.yaml")
    assert [str(p) for p in problems] == [
        "f.yaml:4: b.c: duplicate key 'c' (first on line 3)",
        "f.yaml:5: b.d[1].e: duplicate key 'e' (first on line 5)",
        "f.yaml:6: a: duplicate key 'a' (first on line 1)",
    ]
    doc, problems = parse_yaml(textwrap.dedent(TRICKY["duplicates in an alias"]), "f.yaml")
    assert [str(p) for p in problems] == [
        "f.yaml:3: base.k: duplicate key 'k' (first on line 2)",
        "f.yaml:3: copy.k: duplicate key 'k' (first on line 2)",
    ]
    assert doc.data == {"base": {"k": 2}, "copy": {"k": 2}}
    assert doc.line_of(("copy", "k")) == 3 and doc.line_of(("copy",)) == 4


def test_errors_keep_the_pure_python_wording(tmp_path):
    file = tmp_path / "f.yaml"
    for text, message in [("? [a, b]\n: 1\n", "f.yaml:1: invalid YAML: while constructing a mapping found unhashable key"),
                          ("a: !custom x\n", "f.yaml:1: invalid YAML: could not determine a constructor for the tag '!custom'"),
                          ("a:\n  b: [1, 2}\n", "f.yaml:2: invalid YAML: while parsing a flow sequence expected ',' or ']', but got '}'")]:
        file.write_text(text, encoding="utf-8")
        doc, problems = load_yaml(file, "f.yaml")
        assert doc is None and [str(p) for p in problems] == [message]


@pytest.mark.parametrize("text, line, message", [
    ("a: 1\nb: !!timestamp nope\n", 2, "'nope' cannot be read as timestamp"),
    ("a:\n  - 2024-02-30\n", 2, "'2024-02-30' cannot be read as timestamp: day is out of range for month"),
    ("a: &x [1, *x]\n", 1, "an anchor is used inside itself (a recursive alias)"),
    ("a: &x {b: *x}\n", 1, "an anchor is used inside itself (a recursive alias)"),
])
def test_yaml_that_cannot_become_data_is_a_problem_with_its_line(text, line, message):
    doc, problems = parse_yaml(text, "f.yaml")
    assert doc is None and len(problems) == 1
    assert (problems[0].file, problems[0].line) == ("f.yaml", line)
    assert problems[0].message.startswith(f"invalid YAML: {message}")


@pytest.mark.parametrize("text", ["<<: {}\na: 2024-02-30\n", "<<: {}\na: &x [*x]\n"])
def test_pyyamls_own_path_reports_them_too(text):
    """A file with merge keys is built by PyYAML's constructor, which knows no line here."""
    doc, problems = parse_yaml(text, "f.yaml")
    assert doc is None and [(p.file, p.message.split(":")[0]) for p in problems] == [("f.yaml", "invalid YAML")]


def test_lines_are_found_when_a_problem_needs_one():
    doc, problems = parse_yaml("a:\n  b: [x, {c: 1}]\n", "f.yaml")
    assert problems == []
    assert str(doc.problem(("a", "b", 1, "c"), "bad")) == "f.yaml:2: a.b[1].c: bad"
    assert doc.lines == {(): 1, ("a",): 1, ("a", "b"): 2, ("a", "b", 0): 2, ("a", "b", 1): 2, ("a", "b", 1, "c"): 2}
