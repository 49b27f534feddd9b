"""YAML anchors and aliases are bounded: an alias bomb is a clear error naming the file and line, at once.

Ten levels of ten aliases each are a few lines of YAML and ten billion values
once expanded: every walk after parsing (schema checks, line tables, compiling)
used to take gigabytes and more than 30 s. The limit counts each value once
with its aliases expanded, while the file is read: mapping files, source files
and configuration files all come through it. Files with ordinary anchors (the
shipped Gladly source merges ``<<: *conversation_event``) load as before.
"""
from __future__ import annotations

import shutil
import time

import pytest
from conftest import REPO, write_mappings

from engine import Engine
from engine.load.config import load_config
from engine.load.yaml_source import MAX_NODES, load_yaml, parse_yaml
from engine.problems import ConfigError
from engine.serve.config import load_serve_config

SLOW = 5.0  # seconds: the bomb took more than 30 before; measured well under 0.01 now, generous for a loaded machine


def bomb(key: str = "bomb", indent: str = "") -> str:
    """``key`` holding ten levels of ten aliases, anchored at the lines after the first."""
    lines = [f"{indent}l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + f"\n{indent}{key}: *l9\n"


def timed(call):
    started = time.perf_counter()
    try:
        result = call()
    except ConfigError as exc:
        result = exc
    return result, time.perf_counter() - started


def test_an_alias_bomb_is_refused_with_the_file_and_the_line_where_it_passes_the_limit(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(), encoding="utf-8")
    (doc, problems), took = timed(lambda: load_yaml(path))
    assert doc is None and took < SLOW
    [problem] = problems
    # l4 (line 5) is the first value past 100,000: 10**5 x's and the 11,111 lists holding them
    assert (problem.file, problem.line) == (str(path), 5)
    assert f"anchors and aliases expand this value to over {MAX_NODES:,} values" in problem.message


def test_a_bomb_in_a_destination_mapping_is_refused_at_load(tmp_path):
    root = write_mappings(tmp_path, {"bomb.yaml": "name: Bomb\n" + bomb("description")})
    error, took = timed(lambda: Engine(root))
    assert isinstance(error, ConfigError) and took < SLOW
    assert any(p.file.endswith("bomb.yaml") and p.line == 6 and "alias bomb" in p.message for p in error.problems)


def test_a_bomb_in_a_source_file_is_refused_at_load(tmp_path):
    root = write_mappings(tmp_path, {})
    (root / "sources").mkdir()
    (root / "sources" / "bomb.yaml").write_text("name: Bomb\n" + bomb("vars"), encoding="utf-8")
    error, took = timed(lambda: Engine(root))
    assert isinstance(error, ConfigError) and took < SLOW
    assert any(p.file.endswith("bomb.yaml") and "alias bomb" in p.message for p in error.problems)


def test_a_bomb_in_a_configuration_file_is_refused_by_every_command_that_reads_it(tmp_path):
    path = tmp_path / "eventmap.yaml"
    path.write_text("destinations:\n  planhat:\n    settings:\n" + bomb("tenant_token", "      "), encoding="utf-8")
    (config, problems), took = timed(lambda: load_config(path))
    assert config is None and took < SLOW
    assert [(p.file, p.line) for p in problems] == [(str(path), 8)]
    error, took = timed(lambda: load_serve_config(path, {}))
    assert isinstance(error, ConfigError) and took < SLOW and "alias bomb" in str(error)


def test_a_recursive_alias_is_still_reported_as_one():
    doc, problems = parse_yaml("a: &a [1, *a]\n", "loop.yaml")
    assert doc is None and "recursive alias" in problems[0].message


def test_files_with_ordinary_anchors_and_merges_load(tmp_path):
    doc, problems = load_yaml(REPO / "mappings" / "sources" / "gladly.yaml")
    assert problems == [] and doc is not None
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    assert Engine(tmp_path / "mappings").sources  # the shipped Gladly source, merges and all


@pytest.mark.parametrize("count", [MAX_NODES - 1, MAX_NODES, MAX_NODES + 1])
def test_the_limit_counts_values_with_their_aliases_expanded(count):
    # the document (1), 'a' (1) and its list of 999 (1000), 'all' (1) and its list holding n of them (1 + 1000 n),
    # 'rest' (1) and its list of m (1 + m): 1006 + 1000 n + m values
    aliases, rest = divmod(count - 1006, 1000)
    text = (f"a: &a [{', '.join(['x'] * 999)}]\nall: [{', '.join(['*a'] * aliases)}]\n"
            f"rest: [{', '.join(['y'] * rest)}]\n")
    doc, problems = parse_yaml(text, "many.yaml")
    assert (doc is None) == (count > MAX_NODES), problems
